"""Flax decoder-only LMs (Gemma 1/2/3, Llama 3, Qwen 2) with a chunked, per-row KV cache.

`LMModel` implements the decoder-step protocol (`protocol.py`) the way
`T5Model` does: it is a pytree whose leaves are the parameters (the config
is static), so jitted decoding code compiles once per configuration.
Parameter names follow t5x's habits (`token_embedder/embedding`,
`layers_{i}/attention/query/kernel`, `layers_{i}/mlp/wi_0/kernel`, ...; all
kernels 2-D [in, out]); models/lm/hf.py maps them to Hugging Face's names.

Shapes: B batch, S prompt length, k chunk length, L cache slots, D
hidden_size, H query heads, Hkv key/value heads (G = H / Hkv queries share
one K/V head: multi-query when Hkv = 1, grouped-query otherwise), Dh
head_dim, F intermediate_size, V vocab.

Prompt and decoder positions. The protocol counts decoder positions from a
start token at position 0 (T5's decoder start). An LM has no start token: its
generation continues the prompt. So `init_cache` prefills the K/V of every
prompt token but the last one (cache slots 0 .. n_b - 2 for a row of n_b
tokens, the prompt right-padded to S), and records per row the last prompt
token and the slot offset n_b - 1. Decoder position t of row b then lives in
cache slot (and rope position) n_b - 1 + t, and `step` feeds the stored last
prompt token wherever a chunk holds decoder position 0, whatever token the
kernel passes there. The logits at decoder position t predict generated token
t, exactly as for T5, so the kernels need no change. Padding costs nothing in
the attention mask: slots past a row's prompt hold K/V of pad tokens after the
prefill, but a query at slot i reads slots <= i only, and decoding writes
every slot it reaches before any query reads it (replace-on-write; rollback is
metadata only, as for T5).

Cache layout: per layer {"key", "value"} [B, Hkv, L, Dh] (T5's head-major
layout: both attention contractions are batched GEMMs without a transpose of
the cache; see models/t5/model.py), L = S - 1 + max_length. Local
(sliding-window) layers keep all L slots too and mask by distance, so rollback
stays metadata only; a ring buffer would save memory on long prompts.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.lm.config import LMConfig
from spec_cascade_jax.models.params import init_params
from spec_cascade_jax.models.protocol import check_ids

# Added to masked attention logits (float32), after soft-capping; finite, so a
# row with every key masked gets a uniform softmax, never NaN.
_MASK_BIAS = -1e10
_INIT_STD = 0.02  # Hugging Face's initializer_range for all five families


# ----------------------------------------------------------------------------
# Rotary embeddings
# ----------------------------------------------------------------------------

def rope_inv_freq(c: LMConfig, local: bool) -> np.ndarray:
  """Inverse frequencies [Dh / 2] float32, computed as Hugging Face does in torch
  float32 ("default", "linear" and "llama3" rope types). Global layers get the
  config's scaling; local layers use rope_local_theta unscaled (Gemma 3)."""
  theta = c.rope_local_theta if (local and c.rope_local_theta is not None) else c.rope_theta
  dim = c.head_dim
  exponent = np.arange(0, dim, 2).astype(np.float32) / np.float32(dim)
  inv = (np.float32(1.0) / (np.float32(theta) ** exponent)).astype(np.float32)
  if local or c.rope_scaling is None:
    return inv
  factor = np.float32(c.rope_factor)
  if c.rope_scaling == "linear":
    return (inv / factor).astype(np.float32)
  # llama3: long wavelengths slowed by `factor`, short ones kept, a smooth
  # interpolation between (Llama 3.1's frequency-band rule).
  old_len = np.float32(c.rope_original_max_positions)
  low, high = np.float32(c.rope_low_freq_factor), np.float32(c.rope_high_freq_factor)
  wavelen = np.float32(2 * np.pi) / inv
  scaled = np.where(wavelen > old_len / low, inv / factor, inv)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
  """x [B, Q, heads, Dh] at positions [B, Q] -> rotated x (half-split layout,
  as Hugging Face's `rotate_half`), computed in float32."""
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, Q, Dh/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]            # [B, Q, 1, Dh]
  x32 = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
  return (x32 * jnp.cos(emb) + rotated * jnp.sin(emb)).astype(x.dtype)


# ----------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------

class Dense(nn.Module):
  """Projection with a 2-D float32 kernel [in, out] (and optional bias), in `dtype`."""
  features: int
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.normal(_INIT_STD),
                        (x.shape[-1], self.features), jnp.float32)
    y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y


class RMSNorm(nn.Module):
  """x / rms(x) · w, or · (1 + w) with `plus_one` (Gemma; w starts at 0); float32 inside."""
  eps: float
  plus_one: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = nn.initializers.zeros if self.plus_one else nn.initializers.ones
    scale = self.param("scale", init, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (x32 * (1.0 + scale if self.plus_one else scale)).astype(self.dtype)


class Embed(nn.Module):
  """Token embedding [V, D] float32 (also the tied output projection)."""
  vocab_size: int
  features: int

  def setup(self):
    self.embedding = self.param("embedding", nn.initializers.normal(_INIT_STD),
                                (self.vocab_size, self.features), jnp.float32)


class Attention(nn.Module):
  """Grouped-query attention with rope, optional q/k norm and soft-capping."""
  config: LMConfig
  local: bool

  def setup(self):
    c, dt = self.config, self.config.jnp_dtype
    self.query = Dense(c.num_heads * c.head_dim, c.qkv_bias, dt)
    self.key = Dense(c.num_kv_heads * c.head_dim, c.qkv_bias, dt)
    self.value = Dense(c.num_kv_heads * c.head_dim, c.qkv_bias, dt)
    self.out = Dense(c.hidden_size, c.out_bias, dt)
    if c.qk_norm:
      self.query_norm = RMSNorm(c.rms_norm_eps, c.norm_plus_one, dt)
      self.key_norm = RMSNorm(c.rms_norm_eps, c.norm_plus_one, dt)
    self.inv_freq = rope_inv_freq(c, self.local)

  def __call__(self, x, q_pos, bias, cache=None):
    """x [B, Q, D] at positions q_pos [B, Q]; bias [B, 1, 1, Q, K] float32.

    Without `cache` the keys are the chunk itself (K = Q); returns (y [B, Q, D],
    (k, v) of the chunk, each [B, Hkv, Q, Dh]). With `cache` {"key", "value"}
    [B, Hkv, L, Dh], the chunk's K/V replace slots q_pos (out of range:
    dropped) and the queries read all L slots; returns (y, new cache).
    """
    c = self.config
    b, q_len = x.shape[:2]
    q = self.query(x).reshape(b, q_len, c.num_heads, c.head_dim)
    k = self.key(x).reshape(b, q_len, c.num_kv_heads, c.head_dim)
    v = self.value(x).reshape(b, q_len, c.num_kv_heads, c.head_dim)
    if c.qk_norm:
      q, k = self.query_norm(q), self.key_norm(k)
    q = apply_rope(q, q_pos, self.inv_freq)
    k = apply_rope(k, q_pos, self.inv_freq)
    if cache is None:
      k_all = jnp.transpose(k, (0, 2, 1, 3))  # [B, Q, Hkv, Dh] -> [B, Hkv, Q, Dh]
      v_all = jnp.transpose(v, (0, 2, 1, 3))
      new = (k_all, v_all)
    else:
      rows = jnp.arange(b)[:, None]  # [B, 1]
      # Advanced indices around a slice put them first: the update is [B, Q, Hkv, Dh].
      k_all = cache["key"].at[rows, :, q_pos, :].set(k.astype(cache["key"].dtype),
                                                      mode="drop")
      v_all = cache["value"].at[rows, :, q_pos, :].set(v.astype(cache["value"].dtype),
                                                        mode="drop")
      new = {"key": k_all, "value": v_all}
    # The scale goes on q ([Q, Dh]), not on the scores ([Q, L]).
    q = q * jnp.asarray(c.attention_scale, q.dtype)
    groups = c.num_heads // c.num_kv_heads
    # Query head h reads K/V head h // G: [B, Q, H, Dh] -> [B, Hkv, G, Q, Dh].
    q = jnp.transpose(q.reshape(b, q_len, c.num_kv_heads, groups, c.head_dim),
                      (0, 2, 3, 1, 4))
    scores = jnp.einsum("bkgqd,bkld->bkgql", q, k_all,
                        preferred_element_type=jnp.float32)
    if c.attn_logit_softcap:
      scores = jnp.tanh(scores / c.attn_logit_softcap) * c.attn_logit_softcap
    probs = jax.nn.softmax(scores + bias, axis=-1).astype(v_all.dtype)
    y = jnp.einsum("bkgql,bkld->bkgqd", probs, v_all)                 # [B, Hkv, G, Q, Dh]
    y = jnp.transpose(y, (0, 3, 1, 2, 4)).reshape(b, q_len, -1)       # [B, Q, H * Dh]
    return self.out(y), new


class MLP(nn.Module):
  """Gated MLP: wo(act(wi_0 x) · wi_1 x); GeGLU (Gemma) or SwiGLU (Llama, Qwen)."""
  config: LMConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c, dt = self.config, self.config.jnp_dtype
    gate = Dense(c.intermediate_size, dtype=dt, name="wi_0")(x)   # HF gate_proj
    up = Dense(c.intermediate_size, dtype=dt, name="wi_1")(x)     # HF up_proj
    if c.activation == "silu":
      h = jax.nn.silu(gate)
    else:
      h = jax.nn.gelu(gate, approximate=c.activation == "gelu_tanh")
    return Dense(c.hidden_size, dtype=dt, name="wo")(h * up)      # HF down_proj


class Block(nn.Module):
  """Pre-norm residual block; Gemma 2/3 also normalise each branch's output."""
  config: LMConfig
  local: bool

  def setup(self):
    c, dt = self.config, self.config.jnp_dtype
    norm = lambda: RMSNorm(c.rms_norm_eps, c.norm_plus_one, dt)  # noqa: E731
    self.pre_attention_norm = norm()
    self.attention = Attention(c, self.local)
    self.pre_mlp_norm = norm()
    self.mlp = MLP(c)
    if c.post_norms:
      self.post_attention_norm = norm()
      self.post_mlp_norm = norm()

  def __call__(self, x, q_pos, bias, cache=None):
    h, new = self.attention(self.pre_attention_norm(x), q_pos, bias, cache)
    if self.config.post_norms:
      h = self.post_attention_norm(h)
    x = x + h
    h = self.mlp(self.pre_mlp_norm(x))
    if self.config.post_norms:
      h = self.post_mlp_norm(h)
    return x + h, new


class LMModule(nn.Module):
  """The whole network; `LMModel` calls it through `apply`."""
  config: LMConfig

  def setup(self):
    c = self.config
    self.token_embedder = Embed(c.vocab_size, c.hidden_size)
    self.layers = [Block(c, c.is_local(i)) for i in range(c.num_layers)]  # layers_{i}
    self.decoder_norm = RMSNorm(c.rms_norm_eps, c.norm_plus_one, c.jnp_dtype)
    if not c.tie_word_embeddings:
      self.logits_dense = Dense(c.vocab_size, dtype=c.jnp_dtype)

  def __call__(self, tokens, q_pos, caches=None, with_logits: bool = True):
    """tokens [B, Q] at positions (= cache slots) q_pos [B, Q].

    caches: None (keys are the chunk: a full causal forward) or one
    {"key", "value"} [B, Hkv, L, Dh] per layer. Returns (logits [B, Q, V]
    float32, or None without `with_logits`; per layer the new cache, or the
    chunk's (k, v) when `caches` is None).
    """
    c, dt = self.config, self.config.jnp_dtype
    embedding = self.token_embedder.embedding
    # Gather first, cast after: never a casted [V, D] copy.
    x = jnp.take(embedding, tokens, axis=0).astype(dt)
    if c.embed_scale:
      # In the compute dtype, as Hugging Face (bfloat16: sqrt(2304) = 48.0).
      x = x * jnp.asarray(c.hidden_size ** 0.5, dt)
    k_pos = q_pos if caches is None else jnp.arange(caches[0]["key"].shape[2])[None]
    diff = q_pos[:, :, None] - k_pos[:, None, :]                     # [B, Q, K]
    visible = diff >= 0
    bias = {"global": jnp.where(visible, 0.0, _MASK_BIAS)[:, None, None]}
    if c.sliding_window:
      local = visible & (diff < c.sliding_window)
      bias["local"] = jnp.where(local, 0.0, _MASK_BIAS)[:, None, None]
    new = []
    for i, layer in enumerate(self.layers):
      x, n = layer(x, q_pos, bias["local" if c.is_local(i) else "global"],
                   None if caches is None else caches[i])
      new.append(n)
    if not with_logits:
      return None, new
    x = self.decoder_norm(x)
    if c.tie_word_embeddings:
      logits = jnp.dot(x, embedding.astype(dt).T, preferred_element_type=jnp.float32)
    else:
      logits = self.logits_dense(x).astype(jnp.float32)
    if c.final_logit_softcap:
      logits = jnp.tanh(logits / c.final_logit_softcap) * c.final_logit_softcap
    return logits, new


# ----------------------------------------------------------------------------
# The model: parameters as pytree leaves, configuration static
# ----------------------------------------------------------------------------

@flax.struct.dataclass
class LMModel:
  """A decoder-only LM implementing `protocol.DecoderModel`.

  `params`: {"token_embedder": {"embedding"}, "layers_{i}": ..., "decoder_norm",
  "logits_dense" (untied only)}. Cache (from `init_cache`), batch leading,
  fixed shapes (a valid `lax.while_loop` carry):
    {"layers": {"layers_i": {"key", "value": [B, Hkv, L, Dh]}},
     "last_token": [B] int32 the prompt's last token (fed at decoder position 0),
     "offset": [B] int32 the cache slot of decoder position 0 (prompt length - 1)}.
  """
  config: LMConfig = flax.struct.field(pytree_node=False)
  params: dict
  # The vocabulary it was trained with, where recorded (models/vocab_record.py).
  vocabulary: Any = flax.struct.field(pytree_node=False, default=None)
  decoder_only = True   # protocol.is_decoder_only: inputs are prompts (a class constant)

  @property
  def module(self) -> LMModule:
    return LMModule(self.config)

  def _apply(self, *args, **kw):
    return self.module.apply({"params": self.params}, *args, **kw)

  @classmethod
  def init(cls, config: LMConfig, rng: jax.Array, jit: bool = True) -> "LMModel":
    """Random init (Hugging Face's scales: normal(0.02) kernels, norms at
    identity); works under `jax.eval_shape` for the published sizes."""
    params = init_params(LMModule(config), jnp.zeros((1, 2), jnp.int32), rng, jit)
    return cls(config=config, params=params)

  @property
  def vocab_size(self) -> int:
    return self.config.vocab_size

  @property
  def eos_id(self) -> tuple[int, ...]:
    """The ids that end a generation (protocol.py; `generate`'s default eos_id)."""
    return self.config.eos_ids

  @property
  def pad_id(self) -> int | None:
    return self.config.pad_id

  def prompt_lengths(self, input_ids, input_lengths=None) -> jax.Array:
    """[B] int32 tokens of each right-padded prompt, at least 1.

    input_lengths [B] when given; else, with a pad id (Gemma: 0), one past the
    last non-pad token; without one (Llama 3, Qwen 2.5), the full width S.
    """
    b, s = input_ids.shape
    if input_lengths is not None:
      n = jnp.asarray(input_lengths, jnp.int32)
    elif self.config.pad_id is not None:
      real = input_ids != self.config.pad_id
      n = jnp.max(jnp.where(real, jnp.arange(1, s + 1)[None], 0), axis=1)
    else:
      n = jnp.full((b,), s, jnp.int32)
    return jnp.clip(n, 1, s).astype(jnp.int32)

  def logits(self, input_ids: jax.Array, decoder_input_ids: jax.Array | None = None,
             input_lengths: jax.Array | None = None) -> jax.Array:
    """Teacher-forced logits, no cache kept.

    Without decoder_input_ids: the causal forward of input_ids [B, S] ->
    [B, S, V] float32, logits[:, t] predicting token t + 1. Right padding never
    changes a row's logits at its real tokens (input_lengths is not needed).
    With decoder_input_ids [B, T] (the protocol's decoder positions, T5's
    `logits` signature): [B, T, V] where position 0 stands for the prompt's
    last token (its id there is ignored) and logits[:, t] predicts generated
    token t; prompt lengths as in `prompt_lengths`.
    """
    check_ids("input_ids", input_ids)
    if decoder_input_ids is None:
      pos = jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32),
                             input_ids.shape)
      return self._apply(input_ids, pos)[0]
    check_ids("decoder_input_ids", decoder_input_ids)
    if input_ids.shape[0] != decoder_input_ids.shape[0]:
      raise ValueError(f"Batch sizes differ: input_ids {input_ids.shape}, "
                       f"decoder_input_ids {decoder_input_ids.shape}.")
    t = decoder_input_ids.shape[1]
    cache = self.init_cache(input_ids, t, input_lengths)
    return self.step(decoder_input_ids, cache,
                     jnp.zeros((input_ids.shape[0],), jnp.int32))[0]

  def init_cache(self, input_ids: jax.Array, max_length: int,
                 input_lengths: jax.Array | None = None) -> dict:
    """Prefills all prompt tokens but the last (see the module docstring).

    input_ids [B, S] right-padded prompts; max_length (static) decoder
    positions; input_lengths [B] (optional; see `prompt_lengths`).
    """
    check_ids("input_ids", input_ids)
    if int(max_length) < 1:
      raise ValueError(f"max_length must be >= 1, got {max_length}.")
    c = self.config
    b, s = input_ids.shape
    if input_lengths is not None and tuple(np.shape(input_lengths)) != (b,):
      raise ValueError(f"input_lengths must have shape ({b},), got "
                       f"{tuple(np.shape(input_lengths))}.")
    n = self.prompt_lengths(input_ids, input_lengths)
    slots = s - 1 + int(max_length)
    shape = (b, c.num_kv_heads, slots, c.head_dim)
    if s > 1:
      pos = jnp.broadcast_to(jnp.arange(s - 1, dtype=jnp.int32), (b, s - 1))
      _, kv = self._apply(input_ids[:, :s - 1], pos, with_logits=False)
      pad = ((0, 0), (0, 0), (0, slots - (s - 1)), (0, 0))
      layers = [{"key": jnp.pad(k.astype(c.jnp_dtype), pad),
                 "value": jnp.pad(v.astype(c.jnp_dtype), pad)} for k, v in kv]
    else:
      zeros = jnp.zeros(shape, c.jnp_dtype)
      layers = [{"key": zeros, "value": zeros} for _ in range(c.num_layers)]
    last = jnp.take_along_axis(input_ids.astype(jnp.int32), (n - 1)[:, None], axis=1)[:, 0]
    return {"layers": {f"layers_{i}": x for i, x in enumerate(layers)},
            "last_token": last, "offset": n - 1}

  def step(self, tokens: jax.Array, cache: dict,
           positions: jax.Array) -> tuple[jax.Array, dict]:
    """Decodes a chunk (see `protocol.py`).

    tokens [B, k] int (k static), positions [B] int decoder positions (traced):
    token i of row b sits at decoder position positions[b] + i, i.e. cache
    slot offset[b] + positions[b] + i; at decoder position 0 the stored last
    prompt token is fed instead. Returns (logits [B, k, V] float32, new cache).
    """
    check_ids("tokens", tokens)
    b, k = tokens.shape
    if positions.shape != (b,):
      raise ValueError(f"positions must have shape [B] = ({b},), got {positions.shape}.")
    pos = positions.astype(jnp.int32)[:, None] + jnp.arange(k, dtype=jnp.int32)[None]
    tokens = jnp.where(pos == 0, cache["last_token"][:, None], tokens.astype(jnp.int32))
    slots = cache["offset"][:, None] + pos                                  # [B, k]
    names = [f"layers_{i}" for i in range(self.config.num_layers)]
    logits, new = self._apply(tokens, slots, [cache["layers"][n] for n in names])
    new_cache = dict(cache)
    new_cache["layers"] = dict(zip(names, new))
    return logits, new_cache


def make_model(flat: dict[str, Any], config: LMConfig, source: str,
               dtype: str | None = None) -> LMModel:
  """An LMModel from {"a/b/c": array} parameters (our own format's loader).

  Checks every name and shape against `config` (ValueError naming `source`,
  the parameter and the fix), casts to float32; `dtype` sets the activation
  dtype of the returned model's config.
  """
  from flax import traverse_util

  abstract = jax.eval_shape(lambda: LMModel.init(config, jax.random.PRNGKey(0), jit=False))
  expected = {"/".join(k): tuple(x.shape)
              for k, x in traverse_util.flatten_dict(abstract.params).items()}
  missing = [p for p in expected if p not in flat]
  extra = sorted(p for p in flat if p not in expected)
  if missing or extra:
    bad, what = (missing, "missing") if missing else (extra, "unexpected")
    raise ValueError(
        f"{source}: parameter {bad[0]!r} is {what} ({len(bad)} {what} in all:"
        f" {bad[:5]}{' ...' if len(bad) > 5 else ''}) for config {config.name!r}: the"
        " weights and the config belong to different models. Save the model again.")
  for p, shape in expected.items():
    got = tuple(np.shape(flat[p]))
    if got != shape:
      raise ValueError(f"{source}: parameter {p!r} has shape {got}, but config"
                       f" {config.name!r} expects {shape}: the weights and the config"
                       " belong to different models. Save the model again.")
  if dtype is not None:
    config = config.replace(dtype=dtype)
  params = traverse_util.unflatten_dict(
      {tuple(p.split("/")): jnp.asarray(np.asarray(x, np.float32)) for p, x in flat.items()})
  return LMModel(config=config, params=params)
