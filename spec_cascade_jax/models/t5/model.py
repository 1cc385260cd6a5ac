"""Flax T5 (1.0 and 1.1) with a chunked, per-row KV cache for speculative decoding.

Parameter names follow t5x exactly (`token_embedder/embedding`,
`encoder/layers_{i}/attention/query/kernel`, ...; all kernels 2-D) so that t5x
checkpoints import without renaming. `T5Model` is the glue between the Flax
modules and the decoder-step protocol in `protocol.py`: it is a pytree whose
leaves are the parameters, so jitted decoding code takes it as an argument and
compiles once per configuration, never once per set of weights.

Shapes: B batch, S encoder length, T decoder length, k chunk length, L cache
slots (max decoder length), D d_model, H heads, Dkv head dim, F d_ff, V vocab.

Cache layout. Self-attention K/V are kept as [B, H, L, Dkv] per layer. A decode
step reads the whole cache (it is the memory-bandwidth floor) and writes only k
slots, so the layout serves the read: both attention contractions are then
batched GEMMs with (B, H) leading, [k, Dkv] x [L, Dkv]^T and [k, L] x [L, Dkv],
which XLA lowers without transposing the cache. [B, L, H*Dkv] would make the
write contiguous but force a transpose (a full cache copy) on every read. The
chunk write is a scatter of [B, k, H, Dkv] at per-row slots (mode="drop", so an
out-of-range slot is dropped rather than shifting the write the way a clamped
`dynamic_update_slice` would).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.params import init_params
from spec_cascade_jax.models.protocol import check_ids
from spec_cascade_jax.models.t5.config import T5Config

# Added to masked attention logits (float32). Finite, so a row whose keys are
# all masked (an all-pad encoder input) gives a uniform softmax, not NaN.
_MASK_BIAS = -1e10


# ----------------------------------------------------------------------------
# Relative position buckets
# ----------------------------------------------------------------------------

def relative_position_bucket_table(bidirectional: bool, num_buckets: int,
                                   max_distance: int) -> tuple[np.ndarray, int]:
  """Bucket of every |relative position| below the saturation point.

  T5's bucket depends on sign(rel) (bidirectional only) and |rel|, and is
  constant (num_buckets - 1 of its half) from |rel| >= max_distance on. The
  table is computed once in numpy float32, exactly as HF's
  `_relative_position_bucket` does in torch float32, so no `log` runs on the
  device and buckets agree bit for bit.

  Returns:
    (table [max_distance + 1] int32 indexed by min(|rel|, max_distance),
     offset added for rel > 0: num_buckets // 2 when bidirectional, else 0).
  """
  nb = num_buckets // 2 if bidirectional else num_buckets
  max_exact = nb // 2
  n = np.arange(max_distance + 1, dtype=np.int64)
  with np.errstate(divide="ignore"):
    scaled = (np.log(n.astype(np.float32) / np.float32(max_exact))
              / np.float32(np.log(max_distance / max_exact))
              * np.float32(nb - max_exact))
  # Truncate, then add (HF: max_exact + (...).to(long)); n = 0 gives -inf,
  # replaced before the cast since `where` picks the exact branch there.
  large = np.minimum(max_exact + np.where(n < max_exact, 0, scaled).astype(np.int64),
                     nb - 1)
  table = np.where(n < max_exact, n, large).astype(np.int32)
  return table, (nb if bidirectional else 0)


def relative_position_bucket(relative_position: jax.Array, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> jax.Array:
  """T5 bucket of `relative_position` = key position - query position (int)."""
  table, offset = relative_position_bucket_table(bidirectional, num_buckets,
                                                 max_distance)
  rel = relative_position.astype(jnp.int32)
  if bidirectional:
    n = jnp.abs(rel)
    sign_offset = jnp.where(rel > 0, offset, 0)
  else:
    # Causal: a key in the future of the query (rel > 0) shares bucket 0 with
    # rel = 0; the mask removes it anyway.
    n = jnp.maximum(-rel, 0)
    sign_offset = 0
  return jnp.asarray(table)[jnp.minimum(n, max_distance)] + sign_offset


# ----------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------

def segment_positions(segment_ids: jax.Array) -> jax.Array:
  """[B, L] segment ids of packed rows (contiguous runs) -> each token's
  position within its own segment, [B, L] int32."""
  idx = jnp.broadcast_to(jnp.arange(segment_ids.shape[1], dtype=jnp.int32),
                         segment_ids.shape)
  starts = jnp.concatenate(
      [jnp.ones_like(segment_ids[:, :1], bool),
       segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)
  return idx - jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)


def _same_segment(q_seg: jax.Array, k_seg: jax.Array) -> jax.Array:
  """[B, Q], [B, K] segment ids -> [B, Q, K] bool, True within one segment."""
  return q_seg[:, :, None] == k_seg[:, None, :]


def _normal(std: float):
  return nn.initializers.normal(stddev=std)


class Dense(nn.Module):
  """Bias-free projection with a 2-D float32 kernel [in, out], computed in `dtype`."""
  features: int
  init_std: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", _normal(self.init_std), (x.shape[-1], self.features),
                        jnp.float32)
    return jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))


class RMSNorm(nn.Module):
  """T5 layer norm: x / rms(x) * scale; no mean, no bias; computed in float32."""
  eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (x32 * scale).astype(self.dtype)


class Embed(nn.Module):
  """Shared token embedding [V, D]; `attend` is the tied output projection."""
  vocab_size: int
  features: int
  dtype: Any = jnp.float32

  def setup(self):
    self.embedding = self.param("embedding", _normal(1.0),
                                (self.vocab_size, self.features), jnp.float32)

  def __call__(self, ids: jax.Array) -> jax.Array:
    # Gather first, cast after: never materialises a casted [V, D] copy.
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, x: jax.Array) -> jax.Array:
    """x [..., D] -> logits [..., V] float32."""
    return jnp.dot(x.astype(self.dtype), self.embedding.astype(self.dtype).T,
                   preferred_element_type=jnp.float32)


class RelativePositionBias(nn.Module):
  """One bias table per stack, shared by all its layers: rel_embedding [H, buckets]."""
  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
    """q_pos [B, Q], k_pos [K] or [B, K] int -> bias [B, H, Q, K] float32."""
    c = self.config
    table = self.param("rel_embedding", _normal(c.d_model ** -0.5),
                       (c.num_heads, c.relative_attention_num_buckets), jnp.float32)
    k_pos = k_pos if k_pos.ndim == 2 else k_pos[None]
    buckets = relative_position_bucket(
        k_pos[:, None, :] - q_pos[:, :, None], self.bidirectional,
        c.relative_attention_num_buckets, c.relative_attention_max_distance)  # [B, Q, K]
    bias = jnp.take(table.T, buckets, axis=0)  # [B, Q, K, H]
    return jnp.transpose(bias, (0, 3, 1, 2))  # [B, H, Q, K]


class Attention(nn.Module):
  """Multi-head attention without logit scaling (T5 folds 1/sqrt(Dkv) into init)."""
  config: T5Config

  def setup(self):
    c, dt = self.config, self.config.jnp_dtype
    inner = c.num_heads * c.d_kv
    # t5x / HF init: the query absorbs the 1/sqrt(Dkv) attention scaling.
    self.query = Dense(inner, (c.d_model * c.d_kv) ** -0.5, dt)
    self.key = Dense(inner, c.d_model ** -0.5, dt)
    self.value = Dense(inner, c.d_model ** -0.5, dt)
    self.out = Dense(c.d_model, inner ** -0.5, dt)

  def _heads(self, x: jax.Array) -> jax.Array:
    # [B, T, H * Dkv] -> [B, T, H, Dkv]
    return x.reshape(x.shape[:-1] + (self.config.num_heads, self.config.d_kv))

  def project_q(self, x: jax.Array) -> jax.Array:
    """x [B, Q, D] -> q [B, Q, H, Dkv]."""
    return self._heads(self.query(x))

  def project_kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x [B, K, D] -> (k, v), each [B, K, H, Dkv] (token-major, as projected)."""
    return self._heads(self.key(x)), self._heads(self.value(x))

  def attend(self, q: jax.Array, k: jax.Array, v: jax.Array,
             bias: jax.Array) -> jax.Array:
    """q [B, Q, H, Dkv], k/v [B, H, K, Dkv] (cache layout), bias float32
    broadcastable to [B, H, Q, K] (relative positions + mask) -> [B, Q, D]."""
    # Head-major batched products, transposed around them: XLA:CPU ran
    # "bqhd,bhkd" / "bhqk,bhkd->bqhd" 2-3x slower when measured.
    q = jnp.transpose(q, (0, 2, 1, 3))                                # [B, H, Q, Dkv]
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    # Softmax in float32 (as HF and t5x), whatever the compute dtype.
    probs = jax.nn.softmax(scores + bias, axis=-1).astype(v.dtype)
    y = jnp.einsum("bhqk,bhkd->bhqd", probs, v)                       # [B, H, Q, Dkv]
    y = jnp.transpose(y, (0, 2, 1, 3))                                # [B, Q, H, Dkv]
    return self.out(y.reshape(y.shape[:2] + (-1,)))


class MLP(nn.Module):
  """ReLU (T5 1.0: wi, wo) or gated GELU-tanh (T5 1.1: wi_0, wi_1, wo)."""
  config: T5Config

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c, dt = self.config, self.config.jnp_dtype
    if c.gated:
      h = (jax.nn.gelu(Dense(c.d_ff, c.d_model ** -0.5, dt, name="wi_0")(x),
                       approximate=True)  # HF "gelu_new"
           * Dense(c.d_ff, c.d_model ** -0.5, dt, name="wi_1")(x))
    else:
      h = jax.nn.relu(Dense(c.d_ff, c.d_model ** -0.5, dt, name="wi")(x))
    return Dense(c.d_model, c.d_ff ** -0.5, dt, name="wo")(h)


def _bhkd(x: jax.Array) -> jax.Array:
  # [B, K, H, Dkv] -> [B, H, K, Dkv]
  return jnp.transpose(x, (0, 2, 1, 3))


class EncoderLayer(nn.Module):
  config: T5Config

  def setup(self):
    c = self.config
    self.pre_attention_layer_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)
    self.attention = Attention(c)
    self.pre_mlp_layer_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)
    self.mlp = MLP(c)

  def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
    h = self.pre_attention_layer_norm(x)
    k, v = self.attention.project_kv(h)
    x = x + self.attention.attend(self.attention.project_q(h), _bhkd(k), _bhkd(v), bias)
    return x + self.mlp(self.pre_mlp_layer_norm(x))


class Encoder(nn.Module):
  config: T5Config

  def setup(self):
    c = self.config
    self.relpos_bias = RelativePositionBias(c, bidirectional=True)
    self.layers = [EncoderLayer(c) for _ in range(c.num_layers)]  # layers_{i}
    self.encoder_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)

  def __call__(self, x: jax.Array, mask: jax.Array,
               segment_ids: jax.Array | None = None) -> jax.Array:
    """x [B, S, D] embedded inputs, mask [B, S] bool -> encoded [B, S, D].

    With `segment_ids` [B, S] (packed rows, 0 = pad) a token attends only to
    its own segment, at positions counted from the segment's start."""
    if segment_ids is None:
      pos = jnp.arange(x.shape[1], dtype=jnp.int32)
      bias = self.relpos_bias(pos[None], pos)  # [1, H, S, S]
      bias = bias + jnp.where(mask, 0.0, _MASK_BIAS)[:, None, None, :]  # mask pad keys
    else:
      pos = segment_positions(segment_ids)
      same = _same_segment(segment_ids, segment_ids)  # [B, S, S]
      bias = self.relpos_bias(pos, pos) + jnp.where(same, 0.0, _MASK_BIAS)[:, None]
    for layer in self.layers:
      x = layer(x, bias)
    return self.encoder_norm(x)


class DecoderLayer(nn.Module):
  config: T5Config

  def setup(self):
    c = self.config
    self.pre_self_attention_layer_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)
    self.self_attention = Attention(c)
    self.pre_cross_attention_layer_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)
    self.encoder_decoder_attention = Attention(c)
    self.pre_mlp_layer_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)
    self.mlp = MLP(c)

  def cross_kv(self, encoded: jax.Array) -> tuple[jax.Array, jax.Array]:
    """encoded [B, S, D] -> cross-attention (k, v), each [B, H, S, Dkv]."""
    k, v = self.encoder_decoder_attention.project_kv(encoded)
    return _bhkd(k), _bhkd(v)

  def __call__(self, x, self_bias, cross_k, cross_v, cross_bias,
               cache=None, write_slots=None):
    """One decoder layer.

    x [B, Q, D]; self_bias [B|1, H, Q, K] float32 (relative + causal mask);
    cross_k/v [B, H, S, Dkv]; cross_bias [B, 1, 1, S]. Without a cache the keys
    are the Q inputs themselves (K = Q). With `cache` = {"key", "value"}
    [B, H, L, Dkv], the chunk's K/V replace slots `write_slots` [B, Q] and the
    queries attend over all L slots (K = L). Returns (x, new cache or None).
    """
    h = self.pre_self_attention_layer_norm(x)
    q = self.self_attention.project_q(h)
    k, v = self.self_attention.project_kv(h)  # [B, Q, H, Dkv]
    if cache is None:
      k, v, new_cache = _bhkd(k), _bhkd(v), None
    else:
      rows = jnp.arange(x.shape[0])[:, None]  # [B, 1]
      # Advanced indices (rows, slots) around a slice put the indexed axes
      # first, so the update is [B, Q, H, Dkv]: the projection's own layout.
      k = cache["key"].at[rows, :, write_slots, :].set(k.astype(cache["key"].dtype),
                                                        mode="drop")
      v = cache["value"].at[rows, :, write_slots, :].set(
          v.astype(cache["value"].dtype), mode="drop")
      new_cache = {"key": k, "value": v}
    x = x + self.self_attention.attend(q, k, v, self_bias)
    h = self.pre_cross_attention_layer_norm(x)
    x = x + self.encoder_decoder_attention.attend(
        self.encoder_decoder_attention.project_q(h), cross_k, cross_v, cross_bias)
    return x + self.mlp(self.pre_mlp_layer_norm(x)), new_cache


class Decoder(nn.Module):
  config: T5Config

  def setup(self):
    c = self.config
    self.relpos_bias = RelativePositionBias(c, bidirectional=False)
    self.layers = [DecoderLayer(c) for _ in range(c.n_decoder_layers)]  # layers_{i}
    self.decoder_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)
    if not c.tie_word_embeddings:
      self.logits_dense = Dense(c.vocab_size, c.d_model ** -0.5, c.jnp_dtype)

  def cross_kv(self, encoded: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    return [layer.cross_kv(encoded) for layer in self.layers]

  def __call__(self, x, q_pos, k_pos, cross_kv, encoder_mask, embedding,
               caches=None, write_slots=None, self_mask=None):
    """x [B, Q, D] embedded decoder inputs at positions q_pos [B, Q]; keys at
    k_pos [K] or [B, K] (K = Q without cache, L with); encoder_mask [B, S] bool,
    or [B, Q, S] per query (packed rows); self_mask: optional [B, Q, K] bool
    ANDed into the causal mask (packed rows: same segment); embedding [V, D]
    (tied output) or None. Returns (logits [B, Q, V] f32, caches)."""
    c = self.config
    # Key j is visible to query i iff pos(j) <= pos(i): causal in the chunk and,
    # with a cache, hides stale slots at or beyond the row's position.
    kp = k_pos if k_pos.ndim == 2 else k_pos[None]
    visible = kp[:, None, :] <= q_pos[:, :, None]  # [B, Q, K]
    if self_mask is not None:
      visible = visible & self_mask
    self_bias = self.relpos_bias(q_pos, k_pos) + jnp.where(visible, 0.0, _MASK_BIAS)[:, None]
    cross_bias = jnp.where(encoder_mask, 0.0, _MASK_BIAS)  # [B, S] or [B, Q, S]
    cross_bias = (cross_bias[:, None, None, :] if encoder_mask.ndim == 2
                  else cross_bias[:, None])  # [B, 1, 1|Q, S]
    new_caches = []
    for i, layer in enumerate(self.layers):
      x, nc = layer(x, self_bias, *cross_kv[i], cross_bias,
                    None if caches is None else caches[i], write_slots)
      new_caches.append(nc)
    x = self.decoder_norm(x)
    if c.tie_word_embeddings:
      # T5 1.0 rescales before the tied projection (Mesh TF / HF convention).
      x = x * (c.d_model ** -0.5)
      logits = jnp.dot(x.astype(c.jnp_dtype), embedding.astype(c.jnp_dtype).T,
                       preferred_element_type=jnp.float32)
    else:
      logits = self.logits_dense(x).astype(jnp.float32)
    return logits, (None if caches is None else new_caches)


class T5Module(nn.Module):
  """The whole network; `T5Model` calls its methods through `apply`."""
  config: T5Config

  def setup(self):
    c = self.config
    self.token_embedder = Embed(c.vocab_size, c.d_model, c.jnp_dtype)
    self.encoder = Encoder(c)
    self.decoder = Decoder(c)

  def _tied(self):
    return self.token_embedder.embedding if self.config.tie_word_embeddings else None

  def encode(self, input_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    mask = input_ids != 0  # pad id 0
    return self.encoder(self.token_embedder(input_ids), mask), mask

  def __call__(self, input_ids: jax.Array, decoder_input_ids: jax.Array,
               encoder_segment_ids: jax.Array | None = None,
               decoder_segment_ids: jax.Array | None = None) -> jax.Array:
    if encoder_segment_ids is not None:
      return self._packed(input_ids, decoder_input_ids, encoder_segment_ids,
                          decoder_segment_ids)
    encoded, mask = self.encode(input_ids)
    t = decoder_input_ids.shape[1]
    pos = jnp.arange(t, dtype=jnp.int32)
    q_pos = jnp.broadcast_to(pos[None], decoder_input_ids.shape)
    logits, _ = self.decoder(self.token_embedder(decoder_input_ids), q_pos, pos,
                             self.decoder.cross_kv(encoded), mask, self._tied())
    return logits

  def _packed(self, input_ids, decoder_input_ids, encoder_segment_ids,
              decoder_segment_ids):
    """Teacher forcing on packed rows (several examples per row, t5x-style)."""
    encoded = self.encoder(self.token_embedder(input_ids), input_ids != 0,
                           encoder_segment_ids)
    q_pos = segment_positions(decoder_segment_ids)
    cross_mask = (_same_segment(decoder_segment_ids, encoder_segment_ids)
                  & (encoder_segment_ids > 0)[:, None, :])  # [B, T, S]
    logits, _ = self.decoder(
        self.token_embedder(decoder_input_ids), q_pos, q_pos,
        self.decoder.cross_kv(encoded), cross_mask, self._tied(),
        self_mask=_same_segment(decoder_segment_ids, decoder_segment_ids))
    return logits

  def prefill(self, input_ids: jax.Array) -> tuple[list, jax.Array]:
    encoded, mask = self.encode(input_ids)
    return self.decoder.cross_kv(encoded), mask

  def decode_step(self, tokens, self_caches, cross_kv, encoder_mask, positions):
    k = tokens.shape[1]
    q_pos = positions[:, None] + jnp.arange(k, dtype=jnp.int32)[None]  # [B, k]
    length = self_caches[0]["key"].shape[2]
    return self.decoder(self.token_embedder(tokens), q_pos,
                        jnp.arange(length, dtype=jnp.int32), cross_kv, encoder_mask,
                        self._tied(), self_caches, q_pos)


# ----------------------------------------------------------------------------
# The model: parameters as pytree leaves, configuration static
# ----------------------------------------------------------------------------

@flax.struct.dataclass
class T5Model:
  """A T5 encoder-decoder implementing `protocol.DecoderModel`.

  `params` is the plain t5x-named dict {"token_embedder", "encoder",
  "decoder"} (no outer "params" key). Cache (from `init_cache`), all leaves
  with batch leading and fixed shapes (a valid `lax.while_loop` carry):
    {"self_attention": {"layers_i": {"key", "value": [B, H, L, Dkv]}},
     "cross_attention": {"layers_i": {"key", "value": [B, H, S, Dkv]}},
     "encoder_mask": [B, S] bool}
  in the compute dtype.
  """
  config: T5Config = flax.struct.field(pytree_node=False)
  params: dict
  # The vocabulary it was trained with, where recorded (models/vocab_record.py).
  vocabulary: Any = flax.struct.field(pytree_node=False, default=None)

  @property
  def module(self) -> T5Module:
    return T5Module(self.config)

  def _apply(self, *args, method):
    return self.module.apply({"params": self.params}, *args, method=method)

  @classmethod
  def init(cls, config: T5Config, rng: jax.Array, jit: bool = True) -> "T5Model":
    """Random init (HF/t5x scales); works under `jax.eval_shape` for real sizes.

    jit=True compiles the whole init as one program: the values the training
    recipes started from (`recipe.json`), reproducible bit for bit. Its
    compile time grows with the parameter count, one random-number fusion per
    parameter: T5-large (509 parameters) takes 36 s to compile on a 2-core
    CPU, and T5-small with T5-large took ~4 min on an H200. jit=False runs
    the init eagerly, reusing one compiled sampler per parameter shape
    (T5-large on the CPU: 10 s in all, against 61 s); its values differ from
    the jitted ones in the last bits (≤ 3e-8 seen), which is fine for a
    random-weight model but not for reproducing a recipe.
    """
    params = init_params(T5Module(config), jnp.ones((1, 2), jnp.int32), rng, jit)
    return cls(config=config, params=params)

  @property
  def vocab_size(self) -> int:
    return self.config.vocab_size

  def encode(self, input_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """input_ids [B, S] (0 = pad) -> (encoded [B, S, D] compute dtype, mask [B, S] bool)."""
    check_ids("input_ids", input_ids)
    return self._apply(input_ids, method=T5Module.encode)

  def logits(self, input_ids: jax.Array, decoder_input_ids: jax.Array,
             encoder_segment_ids: jax.Array | None = None,
             decoder_segment_ids: jax.Array | None = None) -> jax.Array:
    """Teacher-forced full forward, no cache.

    input_ids [B, S], decoder_input_ids [B, T] (position 0 = start token 0)
    -> logits [B, T, V] float32; logits[:, t] predicts decoder position t + 1.

    Packed rows (t5x's packing; training/batching.PackedBatcher): give both
    `encoder_segment_ids` [B, S] and `decoder_segment_ids` [B, T] (1, 2, ...
    per example in row order, 0 = pad). Each example then sees only itself,
    with positions restarting at its first token, and its decoder inputs start
    with the start token 0 at its own first position.
    """
    check_ids("input_ids", input_ids)
    check_ids("decoder_input_ids", decoder_input_ids)
    if input_ids.shape[0] != decoder_input_ids.shape[0]:
      raise ValueError(f"Batch sizes differ: input_ids {input_ids.shape}, "
                       f"decoder_input_ids {decoder_input_ids.shape}.")
    if (encoder_segment_ids is None) != (decoder_segment_ids is None):
      raise ValueError("Packed inputs need both encoder_segment_ids and "
                       "decoder_segment_ids (or neither, for unpacked rows).")
    if encoder_segment_ids is not None:
      for name, seg, ids in (("encoder_segment_ids", encoder_segment_ids, input_ids),
                             ("decoder_segment_ids", decoder_segment_ids,
                              decoder_input_ids)):
        if seg.shape != ids.shape:
          raise ValueError(f"{name} has shape {seg.shape}; it must match its "
                           f"token ids' shape {ids.shape}.")
    return self._apply(input_ids, decoder_input_ids, encoder_segment_ids,
                       decoder_segment_ids, method=T5Module.__call__)

  def init_cache(self, input_ids: jax.Array, max_length: int,
                 input_lengths: jax.Array | None = None) -> dict:
    """Encodes `input_ids` [B, S] once; precomputes each layer's cross K/V and
    allocates zeroed self-attention K/V for `max_length` (static) slots.

    input_lengths [B] (optional, protocol.py): tokens past a row's length are
    padding whatever their ids (read as pad 0); None: 0 pads."""
    check_ids("input_ids", input_ids)
    if int(max_length) < 1:
      raise ValueError(f"max_length must be >= 1, got {max_length}.")
    if input_lengths is not None:
      real = jnp.arange(input_ids.shape[1])[None, :] < jnp.asarray(input_lengths)[:, None]
      input_ids = jnp.where(real, input_ids, 0)
    c = self.config
    cross, mask = self._apply(input_ids, method=T5Module.prefill)
    zeros = jnp.zeros((input_ids.shape[0], c.num_heads, int(max_length), c.d_kv),
                      c.jnp_dtype)
    names = [f"layers_{i}" for i in range(c.n_decoder_layers)]
    return {
        "self_attention": {n: {"key": zeros, "value": zeros} for n in names},
        "cross_attention": {n: {"key": k, "value": v} for n, (k, v) in zip(names, cross)},
        "encoder_mask": mask,
    }

  def step(self, tokens: jax.Array, cache: dict,
           positions: jax.Array) -> tuple[jax.Array, dict]:
    """Decodes a chunk (see `protocol.py`).

    tokens [B, k] int (k static), positions [B] int (traced): token i of row b
    sits at decoder position positions[b] + i, attends to slots <=
    positions[b] + i and its K/V replace slot positions[b] + i (slots >= L are
    dropped: the caller keeps positions[b] + k <= L for rows it reads).
    Returns (logits [B, k, V] float32, new cache).
    """
    check_ids("tokens", tokens)
    b = tokens.shape[0]
    if positions.shape != (b,):
      raise ValueError(f"positions must have shape [B] = ({b},), got {positions.shape}.")
    names = [f"layers_{i}" for i in range(self.config.n_decoder_layers)]
    self_caches = [cache["self_attention"][n] for n in names]
    cross = [(cache["cross_attention"][n]["key"], cache["cross_attention"][n]["value"])
             for n in names]
    logits, new_self = self._apply(tokens, self_caches, cross, cache["encoder_mask"],
                                   positions.astype(jnp.int32),
                                   method=T5Module.decode_step)
    new_cache = dict(cache)
    new_cache["self_attention"] = dict(zip(names, new_self))
    return logits, new_cache
