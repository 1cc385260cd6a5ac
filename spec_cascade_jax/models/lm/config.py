"""Decoder-only LM configurations: the Gemma, Llama and Qwen families.

One frozen, hashable dataclass (static for jit) describes every family; the
family's Hugging Face `model_type` selects the weight names and config.json
format (models/lm/hf.py). What differs between families is a handful of
switches:

| feature                         | gemma | gemma2 | gemma3_text | llama | qwen2 |
|---------------------------------|-------|--------|-------------|-------|-------|
| RMSNorm x·(1 + w)               | yes   | yes    | yes         | no    | no    |
| embeddings × sqrt(hidden_size)  | yes   | yes    | yes         | no    | no    |
| MLP                             | GeGLU | GeGLU  | GeGLU       | SwiGLU| SwiGLU|
| norms after attention and MLP   | no    | yes    | yes         | no    | no    |
| q/k RMSNorm over head_dim       | no    | no     | yes         | no    | no    |
| local (sliding-window) layers   | no    | 1 of 2 | 5 of 6      | no    | opt.  |
| attention / final soft-capping  | no    | 50/30  | no          | no    | no    |
| q/k/v biases                    | no    | no     | no          | opt.  | yes   |
| rope scaling of global layers   | no    | no     | linear (4B+)| llama3| no    |

Presets carry the published shapes (`PRESETS`); tiny configs for tests are
built with `tiny_config`. Parameter counts: tests/test_lm.py checks them
against the published totals with `jax.eval_shape`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from spec_cascade_jax.models.params import config_from_dict

MODEL_TYPES = ("gemma", "gemma2", "gemma3_text", "llama", "qwen2")
ACTIVATIONS = ("gelu_tanh", "gelu", "silu")
ROPE_SCALINGS = (None, "linear", "llama3")
LAYER_KINDS = ("global", "local")
_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """Architecture of a decoder-only LM (field names: see the module table).

  `layer_types[i]` is "global" (full causal attention) or "local" (a key at
  most `sliding_window - 1` positions before the query); empty: all global.
  Rope: global layers use `rope_theta` and the scaling (`rope_scaling` with
  its factors, as Hugging Face's "linear" and "llama3" rope types); local
  layers use `rope_local_theta` (None: rope_theta), unscaled.
  Token ids: `eos_ids` end a generation (one or more ids; empty: never);
  `pad_id` is the id that pads prompts when no per-row lengths are given
  (None: the family has no pad token, rows are taken as unpadded).
  """

  model_type: str = "llama"
  vocab_size: int = 32000
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_layers: int = 32
  num_heads: int = 32
  num_kv_heads: int = 32
  head_dim: int = 128
  activation: str = "silu"
  rms_norm_eps: float = 1e-6
  norm_plus_one: bool = False          # Gemma: x / rms(x) · (1 + w)
  embed_scale: bool = False            # Gemma: embeddings × sqrt(hidden_size)
  post_norms: bool = False             # Gemma 2/3: RMSNorm after attention and MLP
  qk_norm: bool = False                # Gemma 3: RMSNorm of q and k per head
  qkv_bias: bool = False               # Qwen2; Llama with attention_bias
  out_bias: bool = False               # Llama with attention_bias
  query_pre_attn_scalar: float | None = None  # scores × this**-0.5; None: head_dim
  attn_logit_softcap: float | None = None
  final_logit_softcap: float | None = None
  rope_theta: float = 10000.0
  rope_local_theta: float | None = None
  rope_scaling: str | None = None      # None | "linear" | "llama3" (global layers)
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0    # llama3 only
  rope_high_freq_factor: float = 4.0   # llama3 only
  rope_original_max_positions: int = 8192  # llama3 only
  sliding_window: int | None = None
  layer_types: tuple[str, ...] = ()
  tie_word_embeddings: bool = True
  bos_id: int | None = None
  eos_ids: tuple[int, ...] = ()
  pad_id: int | None = None
  dtype: str = "float32"               # activations; parameters stay float32
  name: str = "custom"

  def __post_init__(self):
    # Lists (from JSON) become tuples: the config must stay hashable.
    object.__setattr__(self, "layer_types", tuple(self.layer_types))
    eos = self.eos_ids
    object.__setattr__(self, "eos_ids", (int(eos),) if isinstance(eos, int)
                       else tuple(int(e) for e in eos))
    def bad(field, value, allowed):
      raise ValueError(f"LMConfig.{field}={value!r} is not supported; use one of "
                       f"{allowed}.")
    if self.model_type not in MODEL_TYPES:
      bad("model_type", self.model_type, MODEL_TYPES)
    if self.activation not in ACTIVATIONS:
      bad("activation", self.activation, ACTIVATIONS)
    if self.rope_scaling not in ROPE_SCALINGS:
      bad("rope_scaling", self.rope_scaling, ROPE_SCALINGS)
    if self.dtype not in _DTYPES:
      bad("dtype", self.dtype, _DTYPES)
    for f in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
              "num_kv_heads", "head_dim"):
      if getattr(self, f) < 1:
        raise ValueError(f"LMConfig.{f} must be >= 1, got {getattr(self, f)}.")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"LMConfig.num_heads={self.num_heads} must be a multiple of "
                       f"num_kv_heads={self.num_kv_heads} (grouped-query attention).")
    if self.layer_types:
      if len(self.layer_types) != self.num_layers:
        raise ValueError(f"LMConfig.layer_types has {len(self.layer_types)} entries for "
                         f"num_layers={self.num_layers}; give one per layer (or none).")
      unknown = sorted(set(self.layer_types) - set(LAYER_KINDS))
      if unknown:
        bad("layer_types entry", unknown[0], LAYER_KINDS)
      if "local" in self.layer_types and not self.sliding_window:
        raise ValueError("LMConfig.layer_types has local layers but sliding_window is "
                         f"{self.sliding_window!r}; set the window size (>= 1).")
    for i in self.eos_ids + ((self.pad_id,) if self.pad_id is not None else ()):
      if not 0 <= i < self.vocab_size:
        raise ValueError(f"LMConfig token id {i} (eos_ids / pad_id) is outside the "
                         f"vocabulary [0, {self.vocab_size}).")

  def is_local(self, layer: int) -> bool:
    return bool(self.layer_types) and self.layer_types[layer] == "local"

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def attention_scale(self) -> float:
    return float(self.query_pre_attn_scalar or self.head_dim) ** -0.5

  def replace(self, **kw) -> "LMConfig":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["layer_types"], d["eos_ids"] = list(self.layer_types), list(self.eos_ids)
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "LMConfig":
    return config_from_dict(cls, d)


def alternating(num_layers: int, period: int) -> tuple[str, ...]:
  """Every `period`-th layer global, the others local (Gemma 2: 2, Gemma 3: 6)."""
  return tuple("global" if (i + 1) % period == 0 else "local" for i in range(num_layers))


# ---------------------------------------------------------------------------- families

_GEMMA = dict(activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
              tie_word_embeddings=True, bos_id=2, eos_ids=(1,), pad_id=0)


def _make(fields, kw) -> LMConfig:
  return LMConfig(**{**fields, **kw})  # keyword arguments override the family's


def gemma(name, vocab, hidden, inter, layers, heads, kv, head_dim=256, **kw):
  return _make(dict(_GEMMA, model_type="gemma", name=name, vocab_size=vocab,
                    hidden_size=hidden, intermediate_size=inter, num_layers=layers,
                    num_heads=heads, num_kv_heads=kv, head_dim=head_dim), kw)


def gemma2(name, hidden, inter, layers, heads, kv, head_dim=256, qpas=256, vocab=256000,
           window=4096, **kw):
  return _make(dict(_GEMMA, model_type="gemma2", name=name, vocab_size=vocab,
                    hidden_size=hidden, intermediate_size=inter, num_layers=layers,
                    num_heads=heads, num_kv_heads=kv, head_dim=head_dim, post_norms=True,
                    query_pre_attn_scalar=qpas, attn_logit_softcap=50.0,
                    final_logit_softcap=30.0, sliding_window=window,
                    layer_types=alternating(layers, 2)), kw)


def gemma3(name, hidden, inter, layers, heads, kv, head_dim=256, qpas=256, vocab=262208,
           window=1024, rope_factor=8.0, **kw):
  scaling = dict(rope_scaling="linear", rope_factor=rope_factor) if rope_factor != 1 else {}
  return _make(dict(_GEMMA, model_type="gemma3_text", name=name, vocab_size=vocab,
                    hidden_size=hidden, intermediate_size=inter, num_layers=layers,
                    num_heads=heads, num_kv_heads=kv, head_dim=head_dim, post_norms=True,
                    qk_norm=True, query_pre_attn_scalar=qpas, rope_theta=1e6,
                    rope_local_theta=1e4, sliding_window=window,
                    layer_types=alternating(layers, 6), **scaling), kw)


def llama3(name, hidden, inter, layers, heads, kv, head_dim=128, factor=8.0, tied=False,
           vocab=128256, **kw):
  return _make(dict(model_type="llama", name=name, vocab_size=vocab, hidden_size=hidden,
                    intermediate_size=inter, num_layers=layers, num_heads=heads,
                    num_kv_heads=kv, head_dim=head_dim, activation="silu",
                    rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling="llama3",
                    rope_factor=factor, rope_low_freq_factor=1.0,
                    rope_high_freq_factor=4.0, rope_original_max_positions=8192,
                    tie_word_embeddings=tied, bos_id=128000, eos_ids=(128001,),
                    pad_id=None), kw)


def qwen25(name, hidden, inter, layers, heads, kv, tied=True, vocab=151936, **kw):
  return _make(dict(model_type="qwen2", name=name, vocab_size=vocab, hidden_size=hidden,
                    intermediate_size=inter, num_layers=layers, num_heads=heads,
                    num_kv_heads=kv, head_dim=hidden // heads, activation="silu",
                    rms_norm_eps=1e-6, qkv_bias=True, rope_theta=1e6,
                    tie_word_embeddings=tied, bos_id=151643, eos_ids=(151643,),
                    pad_id=None), kw)


# Published shapes (the checkpoints' config.json; Gemma 3: the text tower).
PRESETS: dict[str, LMConfig] = {c.name: c for c in (
    gemma("gemma-2b", 256000, 2048, 16384, 18, 8, 1),
    gemma("gemma-7b", 256000, 3072, 24576, 28, 16, 16),
    gemma2("gemma-2-2b", 2304, 9216, 26, 8, 4),
    gemma2("gemma-2-9b", 3584, 14336, 42, 16, 8),
    gemma2("gemma-2-27b", 4608, 36864, 46, 32, 16, head_dim=128, qpas=144),
    gemma3("gemma-3-1b", 1152, 6912, 26, 4, 1, vocab=262144, window=512, rope_factor=1.0),
    gemma3("gemma-3-4b", 2560, 10240, 34, 8, 4),
    gemma3("gemma-3-12b", 3840, 15360, 48, 16, 8),
    gemma3("gemma-3-27b", 5376, 21504, 62, 32, 16, head_dim=128, qpas=168),
    llama3("llama-3.2-1b", 2048, 8192, 16, 32, 8, head_dim=64, factor=32.0, tied=True),
    llama3("llama-3.2-3b", 3072, 8192, 28, 24, 8, factor=32.0, tied=True),
    llama3("llama-3.1-8b", 4096, 14336, 32, 32, 8),
    qwen25("qwen2.5-0.5b", 896, 4864, 24, 14, 2),
    qwen25("qwen2.5-1.5b", 1536, 8960, 28, 12, 2),
    qwen25("qwen2.5-3b", 2048, 11008, 36, 16, 2),
    qwen25("qwen2.5-7b", 3584, 18944, 28, 28, 4, tied=False, vocab=152064),
)}


def get_config(name: str) -> LMConfig:
  if name not in PRESETS:
    raise ValueError(f"Unknown LM preset {name!r}; known presets: {sorted(PRESETS)}.")
  return PRESETS[name]


def tiny_config(model_type: str, vocab_size: int = 128, **kw) -> LMConfig:
  """A 2-layer, hidden-size-32 model of one family, shaped like its real members
  (grouped-query or multi-query attention; a local and a global layer where the
  family has both; Llama's and Qwen's EOS far from 1 and no pad token). It
  compiles in seconds. Keyword arguments override fields."""
  v = vocab_size
  families = {
      "gemma": lambda: gemma("tiny-gemma", v, 32, 64, 2, 4, 1, head_dim=8),
      "gemma2": lambda: gemma2("tiny-gemma2", 32, 64, 2, 4, 2, head_dim=8, qpas=8,
                               vocab=v, window=3),
      "gemma3_text": lambda: gemma3("tiny-gemma3_text", 32, 64, 2, 4, 2, head_dim=8,
                                    qpas=8, vocab=v, window=3,
                                    layer_types=("local", "global")),
      "llama": lambda: llama3("tiny-llama", 32, 64, 2, 4, 2, head_dim=8, factor=8.0,
                              vocab=v, bos_id=v - 2, eos_ids=(v - 1,), rope_theta=1e4,
                              # wavelengths 6, 63, 628, 6283: one of each llama3 band
                              rope_original_max_positions=64),
      "qwen2": lambda: qwen25("tiny-qwen2", 32, 64, 2, 4, 2, vocab=v, bos_id=v - 1,
                              eos_ids=(v - 1,)),
  }
  if model_type not in families:
    raise ValueError(f"Unknown model_type {model_type!r}; use one of {MODEL_TYPES}.")
  return families[model_type]().replace(**kw)
