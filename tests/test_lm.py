"""Decoder-only LMs (models/lm/model.py): published sizes, prefill + chunks = full forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.models.lm import LMConfig, LMModel, count_params, tiny_config
from spec_cascade_jax.models.lm import config as lm_configs
from spec_cascade_jax.models.lm.model import rope_inv_freq
from spec_cascade_jax.testing import tiny_lm_pair

# Published totals. Gemma 2 and Gemma 3: the technical reports' tables
# (embedding + non-embedding parameters; Gemma 3: the text tower, without the
# 417M vision encoder); Gemma 1, Llama 3.x and Qwen 2.5: the model cards.
PUBLISHED = {
    "gemma-2b": 2.51e9, "gemma-7b": 8.54e9,
    "gemma-2-2b": 590_118_912 + 2_024_517_888,
    "gemma-2-9b": 917_962_752 + 8_324_201_984,
    "gemma-2-27b": 1_180_237_824 + 26_047_480_320,
    "gemma-3-1b": 302e6 + 698e6, "gemma-3-4b": 675e6 + 3_209e6,
    "gemma-3-12b": 1_012e6 + 10_759e6, "gemma-3-27b": 1_416e6 + 25_600e6,
    "llama-3.2-1b": 1.23e9, "llama-3.2-3b": 3.21e9, "llama-3.1-8b": 8.03e9,
    "qwen2.5-0.5b": 0.49e9, "qwen2.5-1.5b": 1.54e9, "qwen2.5-3b": 3.09e9,
    "qwen2.5-7b": 7.61e9,
}


def _count(cfg: LMConfig) -> int:
  shapes = jax.eval_shape(lambda r: LMModel.init(cfg, r, jit=False), jax.random.PRNGKey(0))
  return count_params(shapes.params)


def _count_by_layers(cfg: LMConfig) -> int:
  """eval_shape of 1- and 2-layer copies, extrapolated to num_layers: the
  layers of a model have identical parameter shapes (local and global ones
  differ in their masks only), and tracing all 560 layers of the presets
  would take most of this test's time."""
  one = _count(cfg.replace(num_layers=1, layer_types=cfg.layer_types[:1]))
  two = _count(cfg.replace(num_layers=2, layer_types=cfg.layer_types[:2]))
  return one + (cfg.num_layers - 1) * (two - one)


def test_presets_match_published_parameter_counts():
  assert sorted(PUBLISHED) == sorted(lm_configs.PRESETS)
  for name, cfg in lm_configs.PRESETS.items():
    n = _count_by_layers(cfg)
    assert abs(n / PUBLISHED[name] - 1) < 0.02, (name, n, PUBLISHED[name])
  for name in ("gemma-3-1b", "qwen2.5-0.5b"):  # the extrapolation is exact
    cfg = lm_configs.PRESETS[name]
    assert _count(cfg) == _count_by_layers(cfg), name


def test_preset_shapes_of_the_families():
  g2 = lm_configs.get_config("gemma-2-9b")
  assert g2.layer_types[:4] == ("local", "global", "local", "global")
  g3 = lm_configs.get_config("gemma-3-27b")
  assert g3.layer_types[:6] == ("local",) * 5 + ("global",) and g3.qk_norm
  assert g3.attention_scale == 168 ** -0.5 and g3.rope_scaling == "linear"
  llama = lm_configs.get_config("llama-3.2-1b")
  assert llama.tie_word_embeddings and llama.rope_scaling == "llama3"
  assert llama.num_heads // llama.num_kv_heads == 4  # grouped-query
  assert lm_configs.get_config("gemma-2b").num_kv_heads == 1  # multi-query
  assert lm_configs.get_config("qwen2.5-7b").qkv_bias
  with pytest.raises(ValueError, match="Unknown LM preset 'gemma-9'.*known presets"):
    lm_configs.get_config("gemma-9")


def test_rope_scaling_frequencies():
  """linear divides every frequency; llama3 keeps short wavelengths, divides long
  ones, and interpolates in between (the tiny Llama has one of each)."""
  cfg = tiny_config("llama")
  plain = rope_inv_freq(cfg.replace(rope_scaling=None), local=False)
  np.testing.assert_allclose(plain, 1e4 ** (-np.arange(0, 8, 2) / 8), rtol=1e-6)
  scaled = rope_inv_freq(cfg, local=False)
  assert scaled[0] == plain[0]                             # wavelength 6 < 64 / 4
  assert plain[1] / 8 < scaled[1] < plain[1]               # 63: between the bands
  np.testing.assert_allclose(scaled[2:], plain[2:] / 8, rtol=1e-6)  # > 64: divided
  g3 = tiny_config("gemma3_text")
  np.testing.assert_allclose(rope_inv_freq(g3, local=False),
                             rope_inv_freq(g3.replace(rope_scaling=None), False) / 8)
  np.testing.assert_allclose(rope_inv_freq(g3, local=True),
                             1e4 ** (-np.arange(0, 8, 2) / 8), rtol=1e-6)


# ---------------------------------------------------------------------------- cache

PROMPTS = np.array([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0], [14, 0, 0, 0, 0, 0]],
                   np.int32)
LENGTHS = np.array([6, 3, 1], np.int32)
CONTINUATION = np.array([[20, 21, 22, 23, 24, 25, 26], [27, 28, 29, 30, 31, 32, 33],
                         [34, 35, 36, 37, 38, 39, 40]], np.int32)
_full = jax.jit(lambda m, x: m.logits(x))
_init = jax.jit(lambda m, x, n: m.init_cache(x, 8, n))
_step = jax.jit(lambda m, t, c, p: m.step(t, c, p))
_teacher = jax.jit(lambda m, x, d, n: m.logits(x, d, n))


@pytest.fixture(scope="module", params=["gemma3_text", "llama"])
def model(request):
  # gemma3_text: qk-norm, local/global layers (window 3), post-norms, linear
  # rope; llama: llama3 rope, untied head, EOS far from 1, no pad token.
  return tiny_lm_pair(jax.random.PRNGKey(3), request.param, init_std=0.3)[1]


def _reference(model, b, decoded):
  """Full causal forward of row b's prompt + decoded tokens: the logits that
  predict each decoded position (decoder position t -> generated token t)."""
  seq = np.concatenate([PROMPTS[b, :LENGTHS[b]], decoded])[None]
  width = PROMPTS.shape[1] + CONTINUATION.shape[1]
  padded = np.zeros((1, width), np.int32)
  padded[:, :seq.shape[1]] = seq
  logits = np.asarray(_full(model, padded))[0]
  return logits[LENGTHS[b] - 1:seq.shape[1]]


def test_prefill_then_chunks_at_per_row_positions_equal_full_forward(model):
  """Chunks of different sizes at per-row positions, with a rollback that
  rewrites stale slots, give the full forward's logits (decoder position 0 is
  the prompt's last token, whatever id the kernel passes there)."""
  cache = _init(model, PROMPTS, LENGTHS)
  got = {b: [] for b in range(3)}
  # Chunk 1: positions 0..2 for all rows (position 0 fed as id 99: replaced).
  tokens = np.concatenate([np.full((3, 1), 99), CONTINUATION[:, :2]], axis=1)
  logits, cache = _step(model, tokens, cache, jnp.zeros(3, jnp.int32))
  for b in range(3):
    got[b] = list(np.asarray(logits[b]))
  # A rejected draft: 4 garbage tokens at positions 3..6, then a rollback
  # (metadata only) to per-row positions 3, 2, 3 and 3 real tokens each: the
  # stale K/V beyond each row's position must stay masked.
  garbage = np.full((3, 4), 77, np.int32)
  _, cache = _step(model, garbage, cache, jnp.array([3, 3, 3]))
  pos = np.array([3, 2, 3])
  tokens = np.stack([CONTINUATION[b, pos[b] - 1:pos[b] + 2] for b in range(3)])
  logits, cache = _step(model, tokens, cache, jnp.asarray(pos))
  for b in range(3):
    got[b] = got[b][:pos[b]] + list(np.asarray(logits[b]))
  for b in range(3):
    want = _reference(model, b, CONTINUATION[b, :pos[b] + 2])
    np.testing.assert_allclose(np.stack(got[b]), want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max(), err_msg=f"row {b}")


def test_pad_ids_and_lengths(model):
  """Without input_lengths a Gemma prompt ends at its last non-pad (0) token;
  an LM without a pad id (Llama 3) reads every row as unpadded."""
  n = model.prompt_lengths(jnp.asarray(PROMPTS))
  if model.config.pad_id == 0:
    np.testing.assert_array_equal(n, LENGTHS)
  else:
    np.testing.assert_array_equal(n, [6, 6, 6])
  np.testing.assert_array_equal(model.prompt_lengths(jnp.asarray(PROMPTS), LENGTHS), LENGTHS)
  # The teacher-forced logits of the T5 signature: decoder inputs at positions.
  dec = np.concatenate([np.zeros((3, 1), np.int32), CONTINUATION[:, :3]], axis=1)
  got = np.asarray(_teacher(model, PROMPTS, dec, LENGTHS))
  for b in range(3):
    np.testing.assert_allclose(got[b], _reference(model, b, CONTINUATION[b, :3]),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("change,match", [
    (dict(model_type="gpt2"), r"model_type='gpt2' is not supported.*'gemma'.*'qwen2'"),
    (dict(num_heads=6, num_kv_heads=4), "multiple of num_kv_heads"),
    (dict(activation="relu"), "activation='relu'"),
    (dict(rope_scaling="yarn"), "rope_scaling='yarn'"),
    (dict(layer_types=("local",)), "layer_types has 1 entries for num_layers=2"),
    (dict(sliding_window=None), "local layers but sliding_window"),
    (dict(eos_ids=(128,)), r"token id 128.*outside the vocabulary \[0, 128\)"),
])
def test_config_errors_name_the_field(change, match):
  with pytest.raises(ValueError, match=match):
    tiny_config("gemma2").replace(**change)


def test_config_dict_round_trip():
  cfg = tiny_config("gemma3_text")
  assert LMConfig.from_dict(cfg.to_dict()) == cfg
  with pytest.raises(ValueError, match=r"Unknown LMConfig fields \['bogus'\]"):
    LMConfig.from_dict({**cfg.to_dict(), "bogus": 1})
