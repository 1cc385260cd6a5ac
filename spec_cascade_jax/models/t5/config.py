"""T5 configurations: presets for T5 1.0 / 1.1 sizes and tiny test configs.

Field names follow Hugging Face's `config.json` for T5 so that a config reads
and writes that file without a translation table (see `to_hf_dict`).
Configuration is static for jit: a frozen, hashable dataclass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from spec_cascade_jax.models.params import config_from_dict

_FEED_FORWARD = ("relu", "gated-gelu")
_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture of a T5 encoder-decoder.

  T5 1.0: `feed_forward_proj="relu"`, tied embeddings, decoder output scaled by
  d_model**-0.5 before the shared embedding. T5 1.1: `"gated-gelu"`, untied
  output projection (`decoder/logits_dense`), no scaling.
  """

  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 2048
  num_heads: int = 8
  num_layers: int = 6                      # encoder layers
  num_decoder_layers: int | None = None    # None: same as num_layers
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  feed_forward_proj: str = "relu"
  tie_word_embeddings: bool = True
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"                   # activations; parameters stay float32
  name: str = "custom"

  def __post_init__(self):
    if self.feed_forward_proj not in _FEED_FORWARD:
      raise ValueError(
          f"T5Config.feed_forward_proj={self.feed_forward_proj!r} is not supported;"
          f" use one of {_FEED_FORWARD} ('relu' for T5 1.0, 'gated-gelu' for T5 1.1).")
    if self.dtype not in _DTYPES:
      raise ValueError(f"T5Config.dtype={self.dtype!r}; use one of {_DTYPES}.")
    for f in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_layers"):
      if getattr(self, f) < 1:
        raise ValueError(f"T5Config.{f} must be >= 1, got {getattr(self, f)}.")

  @property
  def n_decoder_layers(self) -> int:
    return self.num_layers if self.num_decoder_layers is None else self.num_decoder_layers

  @property
  def gated(self) -> bool:
    return self.feed_forward_proj == "gated-gelu"

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)

  def replace(self, **kw) -> "T5Config":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "T5Config":
    return config_from_dict(cls, d)

  def to_hf_dict(self) -> dict[str, Any]:
    """The Hugging Face `config.json` contents for this architecture."""
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": self.vocab_size,
        "d_model": self.d_model,
        "d_kv": self.d_kv,
        "d_ff": self.d_ff,
        "num_heads": self.num_heads,
        "num_layers": self.num_layers,
        "num_decoder_layers": self.n_decoder_layers,
        "relative_attention_num_buckets": self.relative_attention_num_buckets,
        "relative_attention_max_distance": self.relative_attention_max_distance,
        "feed_forward_proj": self.feed_forward_proj,
        "tie_word_embeddings": self.tie_word_embeddings,
        "layer_norm_epsilon": self.layer_norm_epsilon,
        "dropout_rate": 0.0,
        "is_encoder_decoder": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any], name: str = "hf") -> "T5Config":
    ff = d.get("feed_forward_proj", "relu")
    if ff == "gated-gelu" or ff == "gated-gelu_new":
      ff = "gated-gelu"
    if d.get("model_type", "t5") not in ("t5", "mt5"):
      raise ValueError(f"config.json model_type={d.get('model_type')!r}: only T5 "
                       "(model_type 't5' or 'mt5') is supported.")
    return cls(
        vocab_size=int(d["vocab_size"]), d_model=int(d["d_model"]), d_kv=int(d["d_kv"]),
        d_ff=int(d["d_ff"]), num_heads=int(d["num_heads"]), num_layers=int(d["num_layers"]),
        num_decoder_layers=d.get("num_decoder_layers"),
        relative_attention_num_buckets=int(d.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(d.get("relative_attention_max_distance", 128)),
        feed_forward_proj=ff,
        tie_word_embeddings=bool(d.get("tie_word_embeddings", True)),
        layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-6)),
        name=name)


def _v10(name, d_model, d_kv, d_ff, heads, layers):
  return T5Config(vocab_size=32128, d_model=d_model, d_kv=d_kv, d_ff=d_ff,
                  num_heads=heads, num_layers=layers, feed_forward_proj="relu",
                  tie_word_embeddings=True, name=name)


def _v11(name, d_model, d_ff, heads, layers):
  return T5Config(vocab_size=32128, d_model=d_model, d_kv=64, d_ff=d_ff,
                  num_heads=heads, num_layers=layers, feed_forward_proj="gated-gelu",
                  tie_word_embeddings=False, name=name)


PRESETS: dict[str, T5Config] = {
    # T5 1.0 (Raffel et al. 2020). "xl"/"xxl" are the 3B / 11B models.
    "t5-small": _v10("t5-small", 512, 64, 2048, 8, 6),
    "t5-base": _v10("t5-base", 768, 64, 3072, 12, 12),
    "t5-large": _v10("t5-large", 1024, 64, 4096, 16, 24),
    "t5-xl": _v10("t5-xl", 1024, 128, 16384, 32, 24),
    "t5-xxl": _v10("t5-xxl", 1024, 128, 65536, 128, 24),
    # T5 1.1 (gated-GELU, untied head).
    "t5.1.1-small": _v11("t5.1.1-small", 512, 1024, 6, 8),
    "t5.1.1-base": _v11("t5.1.1-base", 768, 2048, 12, 12),
    "t5.1.1-large": _v11("t5.1.1-large", 1024, 2816, 16, 24),
    "t5.1.1-xl": _v11("t5.1.1-xl", 2048, 5120, 32, 24),
    "t5.1.1-xxl": _v11("t5.1.1-xxl", 4096, 10240, 64, 24),
    # Tiny configs for tests: compile in seconds on a CPU.
    "tiny-v1.0": T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                          num_layers=2, relative_attention_num_buckets=8,
                          relative_attention_max_distance=16, feed_forward_proj="relu",
                          tie_word_embeddings=True, name="tiny-v1.0"),
    "tiny-v1.1": T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_heads=4,
                          num_layers=2, num_decoder_layers=3,
                          relative_attention_num_buckets=8,
                          relative_attention_max_distance=16,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                          name="tiny-v1.1"),
}
PRESETS["t5-3b"] = PRESETS["t5-xl"]
PRESETS["t5-11b"] = PRESETS["t5-xxl"]


def get_config(name: str) -> T5Config:
  if name not in PRESETS:
    raise ValueError(f"Unknown T5 preset {name!r}; known presets: {sorted(PRESETS)}.")
  return PRESETS[name]
