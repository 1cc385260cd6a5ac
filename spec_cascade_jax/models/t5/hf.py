"""Hugging Face T5 directories (config.json + safetensors / pytorch_model.bin).

`load_hf_t5` reads a `T5ForConditionalGeneration` directory into a `T5Model`
with t5x parameter names; `save_hf_t5` writes one that transformers loads
unchanged. No torch is needed for safetensors; `pytorch_model.bin` imports
torch only when it is the sole weights file.

HF keeps Linear weights as [out, in]; our kernels are [in, out], so every
projection is transposed. The relative attention bias ([buckets, H] in HF,
[H, buckets] in t5x) lives only in block 0 of each stack.

Output head. transformers >= 5 always ties `lm_head` to `shared` and instead
records T5 1.0's output rescaling as `scale_decoder_outputs` in config.json;
older files say `tie_word_embeddings`. Ours is one flag: `tie_word_embeddings`
means "rescale by d_model**-0.5 and project with the shared embedding". A file
without rescaling becomes an untied model whose `logits_dense` is the file's
`lm_head.weight`, or a copy of `shared.weight` when that is absent (tied).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any

import numpy as np

from spec_cascade_jax.models.errors import (HFCheckpointError, HFCheckpointNotFoundError,
                                            read_hf_config)
from spec_cascade_jax.models.t5.config import T5Config
from spec_cascade_jax.models.t5.model import T5Model





_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                 "pytorch_model.bin", "pytorch_model.bin.index.json")

# Present in some checkpoints (e.g. the original t5-small) but unused by T5.
_IGNORED = re.compile(
    r"^(decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight"
    r"|encoder\.embed_tokens\.weight|decoder\.embed_tokens\.weight|lm_head\.weight)$")


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------

def _read_config(path: str) -> tuple[T5Config, dict[str, Any]]:
  cfg_file = os.path.join(path, "config.json")
  d = read_hf_config(path, " (write one with `T5Config.to_hf_dict()` or `save_pretrained`)")
  model_type = d.get("model_type")
  archs = d.get("architectures") or []
  if model_type not in ("t5", "mt5") or any(
      not a.startswith(("T5", "MT5")) for a in archs):
    raise HFCheckpointError(
        f"{cfg_file}: model_type={model_type!r}, architectures={archs}; only T5 "
        "encoder-decoders (model_type 't5', T5ForConditionalGeneration) are supported. "
        "Point to a T5 checkpoint directory instead.")
  try:
    cfg = T5Config.from_hf_dict(d, name=os.path.basename(os.path.normpath(path)))
  except (ValueError, KeyError) as e:
    raise HFCheckpointError(f"{cfg_file}: unsupported T5 configuration: {e}") from e
  if "scale_decoder_outputs" in d:  # transformers >= 5 (see module docstring)
    cfg = cfg.replace(tie_word_embeddings=bool(d["scale_decoder_outputs"]))
  return cfg, d


def _load_safetensors(file: str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file
  try:
    return load_file(file)
  except Exception as e:  # SafetensorError, OSError, ...: a damaged file
    raise HFCheckpointError(
        f"{file} could not be read as safetensors ({type(e).__name__}: {e}); the file is "
        "truncated or corrupt. Re-download or re-save it.") from e


def _load_torch_bin(file: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:
    raise HFCheckpointError(
        f"{file} is a PyTorch pickle and torch is not installed. Install torch "
        "(`pip install torch`), or convert the checkpoint to model.safetensors.") from e
  try:
    state = torch.load(file, map_location="cpu", weights_only=True)
  except Exception as e:
    raise HFCheckpointError(
        f"{file} could not be read by torch.load ({type(e).__name__}: {e}); the file "
        "is truncated or corrupt. Re-download it.") from e
  return {k: v.detach().to(torch.float32).numpy() for k, v in state.items()}


def _read_tensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """All tensors of the directory, and the file each came from (for errors)."""
  present = [f for f in _WEIGHT_FILES if os.path.isfile(os.path.join(path, f))]
  if not present:
    raise HFCheckpointNotFoundError(
        f"No weights in {path}: expected one of {list(_WEIGHT_FILES)}. Save the model "
        "with `save_pretrained` (or `save_hf_t5`) into this directory.")
  name = present[0]
  file = os.path.join(path, name)
  loader = _load_safetensors if "safetensors" in name else _load_torch_bin
  if not name.endswith(".index.json"):
    tensors = loader(file)
    return tensors, {k: file for k in tensors}
  try:
    with open(file) as f:
      weight_map = json.load(f)["weight_map"]
  except (json.JSONDecodeError, KeyError) as e:
    raise HFCheckpointError(f"{file}: not a valid shard index ({e}); re-download it.") from e
  tensors, origin = {}, {}
  for shard in sorted(set(weight_map.values())):
    shard_file = os.path.join(path, shard)
    if not os.path.isfile(shard_file):
      raise HFCheckpointNotFoundError(
          f"{shard_file} (listed in {file}) is missing; download every shard.")
    part = loader(shard_file)
    tensors.update(part)
    origin.update({k: shard_file for k in part})
  return tensors, origin


class _Tensors:
  """Looks tensors up by HF name, checking presence and shape with clear errors."""

  def __init__(self, tensors, origin, path):
    self.tensors, self.origin, self.path, self.used = tensors, origin, path, set()

  def get(self, name: str, shape: tuple[int, ...], param: str) -> np.ndarray:
    if name not in self.tensors:
      raise HFCheckpointError(
          f"Tensor {name!r} (for parameter {param}) is missing from the weights in "
          f"{self.path}. The checkpoint is incomplete or is not a T5 with this "
          "config.json; re-save it with `save_pretrained`.")
    x = self.tensors[name]
    self.used.add(name)
    if tuple(x.shape) != tuple(shape):
      raise HFCheckpointError(
          f"{self.origin[name]}: tensor {name!r} (parameter {param}) has shape "
          f"{tuple(x.shape)} but config.json implies {tuple(shape)}. The weights and "
          "config.json belong to different models; use the config.json saved with them.")
    return np.asarray(x, dtype=np.float32)


def _hf_layer_names(stack: str, i: int, decoder: bool):
  """(our sub-path, HF name prefix) pairs for one block's attention and MLP."""
  b = f"{stack}.block.{i}.layer"
  if decoder:
    return {"self_attention": f"{b}.0.SelfAttention",
            "encoder_decoder_attention": f"{b}.1.EncDecAttention"}, f"{b}.2"
  return {"attention": f"{b}.0.SelfAttention"}, f"{b}.1"


def _norm_names(stack: str, i: int, decoder: bool):
  b = f"{stack}.block.{i}.layer"
  if decoder:
    return {"pre_self_attention_layer_norm": f"{b}.0.layer_norm.weight",
            "pre_cross_attention_layer_norm": f"{b}.1.layer_norm.weight",
            "pre_mlp_layer_norm": f"{b}.2.layer_norm.weight"}
  return {"pre_attention_layer_norm": f"{b}.0.layer_norm.weight",
          "pre_mlp_layer_norm": f"{b}.1.layer_norm.weight"}


def _mlp_names(c: T5Config):
  return ("wi_0", "wi_1", "wo") if c.gated else ("wi", "wo")


def _stack_params(t: _Tensors, c: T5Config, stack: str) -> dict:
  decoder = stack == "decoder"
  n = c.n_decoder_layers if decoder else c.num_layers
  d, inner = c.d_model, c.num_heads * c.d_kv
  out: dict[str, Any] = {}
  rel = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
  out["relpos_bias"] = {"rel_embedding": t.get(
      rel, (c.relative_attention_num_buckets, c.num_heads), f"{stack}/relpos_bias").T}
  for i in range(n):
    layer: dict[str, Any] = {}
    for ours, hf in _norm_names(stack, i, decoder).items():
      layer[ours] = {"scale": t.get(hf, (d,), f"{stack}/layers_{i}/{ours}/scale")}
    attns, mlp_prefix = _hf_layer_names(stack, i, decoder)
    for ours, hf in attns.items():
      layer[ours] = {}
      for proj, letter in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
        shape = (d, inner) if proj == "out" else (inner, d)  # HF: [out, in]
        param = f"{stack}/layers_{i}/{ours}/{proj}/kernel"
        layer[ours][proj] = {"kernel": t.get(f"{hf}.{letter}.weight", shape, param).T}
    layer["mlp"] = {}
    for w in _mlp_names(c):
      shape = (d, c.d_ff) if w == "wo" else (c.d_ff, d)
      param = f"{stack}/layers_{i}/mlp/{w}/kernel"
      layer["mlp"][w] = {"kernel": t.get(f"{mlp_prefix}.DenseReluDense.{w}.weight",
                                         shape, param).T}
    out[f"layers_{i}"] = layer
  norm = "decoder_norm" if decoder else "encoder_norm"
  out[norm] = {"scale": t.get(f"{stack}.final_layer_norm.weight", (d,), f"{stack}/{norm}/scale")}
  return out


def load_hf_t5(path: str, dtype: str = "float32") -> T5Model:
  """Reads a Hugging Face T5 directory into a `T5Model` (parameters float32).

  `dtype` is the compute dtype ("float32" or "bfloat16"). Raises
  `HFCheckpointNotFoundError` (a FileNotFoundError) for missing files and
  `HFCheckpointError` (a ValueError) for anything else that does not fit.
  """
  if not os.path.isdir(path):
    raise HFCheckpointNotFoundError(
        f"{path} is not a directory; pass the Hugging Face model directory holding "
        "config.json and model.safetensors.")
  cfg, _ = _read_config(path)
  try:
    cfg = cfg.replace(dtype=dtype)
  except ValueError as e:
    raise HFCheckpointError(f"load_hf_t5(dtype={dtype!r}): {e}") from e
  tensors, origin = _read_tensors(path)
  t = _Tensors(tensors, origin, path)
  v, d = cfg.vocab_size, cfg.d_model
  shared = next((n for n in ("shared.weight", "encoder.embed_tokens.weight",
                             "decoder.embed_tokens.weight") if n in tensors), "shared.weight")
  params: dict[str, Any] = {
      "token_embedder": {"embedding": t.get(shared, (v, d), "token_embedder/embedding")},
      "encoder": _stack_params(t, cfg, "encoder"),
      "decoder": _stack_params(t, cfg, "decoder"),
  }
  if (cfg.tie_word_embeddings and "lm_head.weight" in tensors
      and not np.array_equal(tensors["lm_head.weight"], tensors.get(shared))):
    raise HFCheckpointError(
        f"{origin['lm_head.weight']}: lm_head.weight differs from {shared} while "
        "config.json asks for T5 1.0 output rescaling; a rescaled untied head is not a "
        "T5 variant this code supports. Set tie_word_embeddings (or "
        "scale_decoder_outputs) to false in config.json if the model is T5 1.1.")
  if not cfg.tie_word_embeddings:
    head = "lm_head.weight" if "lm_head.weight" in tensors else shared
    params["decoder"]["logits_dense"] = {
        "kernel": t.get(head, (v, d), "decoder/logits_dense/kernel").T.copy()}
  unused = sorted(k for k in tensors if k not in t.used and not _IGNORED.match(k))
  if unused:
    warnings.warn(f"{path}: {len(unused)} tensors not used by T5: {unused[:5]}"
                  f"{' ...' if len(unused) > 5 else ''}")
  import jax.numpy as jnp  # after the checks: a bad directory fails fast
  params = {k: _to_jax(p, jnp) for k, p in params.items()}
  return T5Model(config=cfg, params=params)


def _to_jax(tree, jnp):
  if isinstance(tree, dict):
    return {k: _to_jax(v, jnp) for k, v in tree.items()}
  return jnp.asarray(np.ascontiguousarray(tree), jnp.float32)


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------

def save_hf_t5(model: T5Model, path: str) -> None:
  """Writes config.json + model.safetensors that `T5ForConditionalGeneration.
  from_pretrained(path)` loads with no missing or unexpected keys.

  Tied (T5 1.0) models store only `shared.weight`, as `save_pretrained` does;
  transformers ties `encoder/decoder.embed_tokens` and `lm_head` to it.
  Untied models also store `lm_head.weight` (transformers 5 logs that it
  leaves the two untied because they differ, which is what we want).
  """
  from safetensors.numpy import save_file
  c = model.config
  p = _numpy_tree(model.params)
  tensors: dict[str, np.ndarray] = {"shared.weight": p["token_embedder"]["embedding"]}
  for stack in ("encoder", "decoder"):
    decoder = stack == "decoder"
    sp = p[stack]
    tensors[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
        sp["relpos_bias"]["rel_embedding"].T)
    for i in range(c.n_decoder_layers if decoder else c.num_layers):
      lp = sp[f"layers_{i}"]
      for ours, hf in _norm_names(stack, i, decoder).items():
        tensors[hf] = lp[ours]["scale"]
      attns, mlp_prefix = _hf_layer_names(stack, i, decoder)
      for ours, hf in attns.items():
        for proj, letter in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
          tensors[f"{hf}.{letter}.weight"] = lp[ours][proj]["kernel"].T
      for w in _mlp_names(c):
        tensors[f"{mlp_prefix}.DenseReluDense.{w}.weight"] = lp["mlp"][w]["kernel"].T
    norm = "decoder_norm" if decoder else "encoder_norm"
    tensors[f"{stack}.final_layer_norm.weight"] = sp[norm]["scale"]
  if not c.tie_word_embeddings:
    tensors["lm_head.weight"] = p["decoder"]["logits_dense"]["kernel"].T
  tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
  os.makedirs(path, exist_ok=True)
  hf_cfg = c.to_hf_dict()
  hf_cfg["decoder_start_token_id"] = 0
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_cfg, f, indent=2, sort_keys=True)
  save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def _numpy_tree(tree):
  if isinstance(tree, dict):
    return {k: _numpy_tree(v) for k, v in tree.items()}
  return np.asarray(tree, dtype=np.float32)
