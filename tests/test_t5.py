"""Flax T5: cached chunked decoding equals the full forward pass; sizes; buckets."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.models import protocol
from spec_cascade_jax.models.t5 import (PRESETS, T5Config, T5Model, count_params,
                                        relative_position_bucket)

# Inputs padded differently per row (0 = pad); row 2 is short.
INPUT_IDS = np.array([[5, 6, 7, 8, 9, 10],
                      [11, 12, 13, 0, 0, 0],
                      [14, 0, 0, 0, 0, 0]], np.int32)
T = 16          # decoder positions checked
MAX_LEN = T + 5  # room for a chunk of 5 starting at T - 1


def _decoder_ids(vocab, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(2, vocab, size=(INPUT_IDS.shape[0], MAX_LEN)).astype(np.int32)
  ids[:, 0] = 0  # decoder start token
  return ids


@pytest.fixture(scope="module", params=["tiny-v1.0", "tiny-v1.1"])
def model(request):
  return T5Model.init(PRESETS[request.param], jax.random.PRNGKey(1))


_TRACES = []  # one entry per trace of `_logits`
_logits = jax.jit(lambda m, x, y: (_TRACES.append(m.config.name), m.logits(x, y))[1])
_step = jax.jit(lambda m, t, c, p: m.step(t, c, p))
_init_cache = jax.jit(lambda m, x: m.init_cache(x, MAX_LEN))


def test_is_decoder_model(model):
  assert isinstance(model, protocol.DecoderModel)
  assert model.vocab_size == model.config.vocab_size


def test_param_tree_is_t5x_named(model):
  p, c = model.params, model.config
  assert set(p) == {"token_embedder", "encoder", "decoder"}
  assert p["token_embedder"]["embedding"].shape == (c.vocab_size, c.d_model)
  inner = c.num_heads * c.d_kv
  enc0 = p["encoder"]["layers_0"]
  assert enc0["attention"]["query"]["kernel"].shape == (c.d_model, inner)
  assert enc0["attention"]["out"]["kernel"].shape == (inner, c.d_model)
  assert p["encoder"]["relpos_bias"]["rel_embedding"].shape == (
      c.num_heads, c.relative_attention_num_buckets)
  dec = p["decoder"]
  assert len([k for k in dec if k.startswith("layers_")]) == c.n_decoder_layers
  assert set(dec["layers_0"]) == {
      "pre_self_attention_layer_norm", "self_attention", "pre_cross_attention_layer_norm",
      "encoder_decoder_attention", "pre_mlp_layer_norm", "mlp"}
  mlp = {"wi_0", "wi_1", "wo"} if c.gated else {"wi", "wo"}
  assert set(dec["layers_0"]["mlp"]) == mlp
  assert ("logits_dense" in dec) == (not c.tie_word_embeddings)
  for leaf in jax.tree_util.tree_leaves(p):
    assert leaf.dtype == jnp.float32 and leaf.ndim in (1, 2)


def test_chunked_ragged_decode_matches_full_forward(model):
  """Token-by-token and chunked (k = 1..5, per-row positions) decoding equal the
  teacher-forced forward pass position by position."""
  dec = _decoder_ids(model.vocab_size)
  full = np.asarray(_logits(model, INPUT_IDS, dec))  # [B, MAX_LEN, V]
  b = INPUT_IDS.shape[0]

  # Token by token, all rows in step.
  cache = _init_cache(model, INPUT_IDS)
  for t in range(T):
    out, cache = _step(model, dec[:, t:t + 1], cache, jnp.full((b,), t, jnp.int32))
    np.testing.assert_allclose(out[:, 0], full[:, t], rtol=1e-5, atol=1e-5)

  # Chunks of k = 1..5 at ragged per-row positions. Each row accepts a different
  # number of the chunk's tokens (as speculative decoding does), so rows drift
  # apart; the unaccepted slots are rewritten by the next chunk.
  cache = _init_cache(model, INPUT_IDS)
  pos = np.zeros(b, np.int32)
  checked, ragged_calls = 0, 0
  for call in range(10):
    k = call % 5 + 1
    toks = np.stack([dec[r, pos[r]:pos[r] + k] for r in range(b)])
    out, cache = _step(model, toks, cache, jnp.asarray(pos))
    ragged_calls += len(set(pos.tolist())) > 1
    for r in range(b):
      for i in range(k):
        np.testing.assert_allclose(out[r, i], full[r, pos[r] + i], rtol=1e-5, atol=1e-5,
                                   err_msg=f"row {r} position {pos[r] + i} (k={k})")
        checked += 1
    accepted = np.maximum(1, (k * np.arange(1, b + 1)) // b)  # row 0: 1, last row: k
    pos = np.minimum(pos + accepted, T - 1).astype(np.int32)
  assert ragged_calls >= 7 and checked > 60


def test_rollback_overwrites_stale_slots(model):
  """Garbage written past a row's position and then rolled back leaves no trace."""
  dec = _decoder_ids(model.vocab_size, seed=1)
  full = np.asarray(_logits(model, INPUT_IDS, dec))
  b = INPUT_IDS.shape[0]
  garbage = np.full((b, 5), 3, np.int32)

  clean = _init_cache(model, INPUT_IDS)
  _, clean = _step(model, dec[:, :4], clean, jnp.zeros((b,), jnp.int32))
  _, clean = _step(model, dec[:, 4:7], clean, jnp.full((b,), 4, jnp.int32))

  dirty = _init_cache(model, INPUT_IDS)
  _, dirty = _step(model, dec[:, :4], dirty, jnp.zeros((b,), jnp.int32))
  # Rejected draft: garbage in slots 2..6 (rows roll back to position 2, not 4).
  _, dirty = _step(model, garbage, dirty, jnp.full((b,), 2, jnp.int32))
  k_clean = clean["self_attention"]["layers_0"]["key"]
  assert not np.allclose(dirty["self_attention"]["layers_0"]["key"][:, :, 2:4],
                         k_clean[:, :, 2:4])
  out, dirty = _step(model, dec[:, 2:5], dirty, jnp.full((b,), 2, jnp.int32))
  np.testing.assert_allclose(out, full[:, 2:5], rtol=1e-5, atol=1e-5)
  # Slots 5, 6 still hold garbage; they must be masked, then replaced.
  out, dirty = _step(model, dec[:, 5:7], dirty, jnp.full((b,), 5, jnp.int32))
  np.testing.assert_allclose(out, full[:, 5:7], rtol=1e-5, atol=1e-5)
  for name, kv in clean["self_attention"].items():
    for which in ("key", "value"):
      np.testing.assert_allclose(dirty["self_attention"][name][which][:, :, :7],
                                 kv[which][:, :, :7], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_jit_takes_weights_as_arguments(model):
  """Two weight sets share one compilation: weights are not baked-in constants."""
  dec = _decoder_ids(model.vocab_size)
  a = _logits(model, INPUT_IDS, dec)
  traced = len(_TRACES)
  other = T5Model.init(model.config, jax.random.PRNGKey(7))
  b = _logits(other, INPUT_IDS, dec)
  assert len(_TRACES) == traced  # no retrace for new weights
  assert not np.allclose(a, b)
  assert a.dtype == jnp.float32 and a.shape == (3, MAX_LEN, model.vocab_size)


def test_cache_is_a_fixed_shape_loop_carry(model):
  cache = _init_cache(model, INPUT_IDS)
  c, b = model.config, INPUT_IDS.shape[0]
  kv = cache["self_attention"]["layers_0"]["key"]
  assert kv.shape == (b, c.num_heads, MAX_LEN, c.d_kv)
  assert cache["cross_attention"]["layers_0"]["value"].shape == (
      b, c.num_heads, INPUT_IDS.shape[1], c.d_kv)
  assert cache["encoder_mask"].dtype == jnp.bool_
  for leaf in jax.tree_util.tree_leaves(cache):
    assert leaf.shape[0] == b

  # Two steps inside lax.while_loop give the same logits as two eager steps.
  dec = _decoder_ids(c.vocab_size)

  def body(carry):
    i, cache, _ = carry
    toks = jax.lax.dynamic_slice_in_dim(jnp.asarray(dec), i * 2, 2, axis=1)
    out, cache = model.step(toks, cache, jnp.full((b,), i * 2, jnp.int32))
    return i + 1, cache, out

  out0 = jnp.zeros((b, 2, c.vocab_size), jnp.float32)
  _, _, out = jax.jit(lambda cache: jax.lax.while_loop(
      lambda s: s[0] < 2, body, (0, cache, out0)))(cache)
  full = _logits(model, INPUT_IDS, dec)
  np.testing.assert_allclose(out, full[:, 2:4], rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_clear_errors(model):
  cache = _init_cache(model, INPUT_IDS)
  with pytest.raises(ValueError, match="positions must have shape"):
    model.step(jnp.zeros((3, 1), jnp.int32), cache, jnp.zeros((2,), jnp.int32))
  with pytest.raises(ValueError, match="tokens must be 2-D"):
    model.step(jnp.zeros((3,), jnp.int32), cache, jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="integer token ids"):
    model.logits(INPUT_IDS.astype(np.float32), INPUT_IDS)


@pytest.mark.slow
def test_bfloat16_close_to_float32():
  cfg = PRESETS["tiny-v1.1"]
  m32 = T5Model.init(cfg, jax.random.PRNGKey(3))
  m16 = T5Model(config=cfg.replace(dtype="bfloat16"), params=m32.params)
  dec = _decoder_ids(cfg.vocab_size)  # the float32 compilation is shared
  l32 = np.asarray(_logits(m32, INPUT_IDS, dec))
  l16 = _logits(m16, INPUT_IDS, dec)
  assert l16.dtype == jnp.float32
  scale = np.abs(l32).max()
  np.testing.assert_allclose(l16, l32, atol=0.05 * scale)
  assert not np.array_equal(np.asarray(l16), l32)  # really ran in bfloat16
  cache = _init_cache(m16, INPUT_IDS)
  assert cache["self_attention"]["layers_0"]["key"].dtype == jnp.bfloat16
  out, _ = _step(m16, dec[:, :3], cache, jnp.zeros((3,), jnp.int32))
  np.testing.assert_allclose(out, l16[:, :3], atol=0.05 * scale)


def _count(name):
  shapes = jax.eval_shape(lambda r: T5Model.init(PRESETS[name], r), jax.random.PRNGKey(0))
  return count_params(shapes.params)


@pytest.mark.slow
def test_real_sizes_parameter_counts():
  """Published sizes count T5 1.0's tied embedding twice (input and output)."""
  large, xl = _count("t5-large"), _count("t5-xl")
  emb = 32128 * 1024
  assert large == 737_668_096  # transformers' num_parameters() for t5-large
  assert abs(large + emb - 770e6) / 770e6 < 0.01
  assert xl == 2_851_598_336  # t5-3b
  assert abs(xl + emb - 3e9) / 3e9 < 0.05  # "3B" is a rounded name: 2.88B
  assert abs(_count("t5.1.1-large") - 783e6) / 783e6 < 0.01
  assert abs(_count("t5.1.1-xl") - 2.85e9) / 2.85e9 < 0.01


def test_real_size_cache_layout_by_eval_shape():
  cfg = PRESETS["t5-xl"]
  shapes = jax.eval_shape(lambda r: T5Model.init(cfg, r), jax.random.PRNGKey(0))
  ids = jax.ShapeDtypeStruct((2, 64), jnp.int32)
  cache = jax.eval_shape(lambda m, x: m.init_cache(x, 128), shapes, ids)
  assert cache["self_attention"]["layers_23"]["value"].shape == (2, 32, 128, 128)
  assert cache["cross_attention"]["layers_0"]["key"].shape == (2, 32, 64, 128)
  logits, _ = jax.eval_shape(lambda m, c: m.step(jnp.zeros((2, 4), jnp.int32), c,
                                                 jnp.zeros((2,), jnp.int32)), shapes, cache)
  assert logits.shape == (2, 4, 32128) and logits.dtype == jnp.float32


def _hf_bucket_numpy(relative_position, bidirectional, num_buckets, max_distance):
  """Line-for-line numpy port of HF's T5Attention._relative_position_bucket."""
  relative_buckets = np.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    relative_buckets += (relative_position > 0).astype(np.int64) * num_buckets
    relative_position = np.abs(relative_position)
  else:
    relative_position = -np.minimum(relative_position, np.zeros_like(relative_position))
  max_exact = num_buckets // 2
  is_small = relative_position < max_exact
  with np.errstate(divide="ignore", invalid="ignore"):  # log(0): masked by is_small
    if_large = max_exact + (
        np.log(relative_position.astype(np.float32) / max_exact)
        / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).astype(np.float32).astype(np.int64)
  if_large = np.minimum(if_large, np.full_like(if_large, num_buckets - 1))
  relative_buckets += np.where(is_small, relative_position, if_large)
  return relative_buckets


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 16), (32, 64)])
def test_relative_position_bucket_matches_hf(bidirectional, num_buckets, max_distance):
  rel = np.arange(-400, 401, dtype=np.int64)
  want = _hf_bucket_numpy(rel, bidirectional, num_buckets, max_distance)
  got = relative_position_bucket(jnp.asarray(rel, jnp.int32), bidirectional,
                                 num_buckets, max_distance)
  np.testing.assert_array_equal(np.asarray(got), want)
  assert want.max() == num_buckets - 1  # the far buckets are reached


@pytest.mark.slow
def test_eager_init_matches_the_jitted_one_but_for_last_bits():
  cfg = T5Config(name="tiny", vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                 num_layers=2, num_decoder_layers=1)
  a = T5Model.init(cfg, jax.random.PRNGKey(5))
  b = T5Model.init(cfg, jax.random.PRNGKey(5), jit=False)
  assert list(a.params) == list(b.params)  # same (sorted) key order: zip-safe
  assert jax.tree.structure(a.params) == jax.tree.structure(b.params)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    assert x.shape == y.shape and x.dtype == y.dtype
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)
  c = T5Model.init(cfg, jax.random.PRNGKey(6), jit=False)
  assert not np.allclose(c.params["token_embedder"]["embedding"],
                         b.params["token_embedder"]["embedding"])  # the key matters
