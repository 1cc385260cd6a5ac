"""Hugging Face decoder-only LM directories: Gemma, Gemma 2, Gemma 3 (text), Llama, Qwen 2.

`load_hf_lm(path)` reads config.json and the weights (model.safetensors, or
shards listed in model.safetensors.index.json) of a `*ForCausalLM` directory
into an `LMModel`; `save_hf_lm(model, path)` writes one that transformers
loads unchanged. No torch and no hub: safetensors files are read here (the
header is JSON, the data raw little-endian arrays), memory-mapped, so a shard
is converted one tensor at a time; float32, float16 and bfloat16 tensors
load as float32.

Names. HF keeps Linear weights as [out, in]; our kernels are [in, out]. One
trap: in Llama, Qwen 2 and Gemma 1 `post_attention_layernorm` is the norm
BEFORE the MLP; in Gemma 2/3 it is the norm applied to the attention output,
and `pre_feedforward_layernorm` / `post_feedforward_layernorm` surround the MLP.

config.json. transformers >= 5 writes rope settings as `rope_parameters`
(Gemma 3: one dict per layer type); older files (and the published
checkpoints) use `rope_theta`, `rope_scaling` and, for Gemma 3,
`rope_local_base_freq` and `sliding_window_pattern`. Both are read; the
older form is written, which every transformers version reads.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np

from spec_cascade_jax.models.lm.config import MODEL_TYPES, LMConfig, alternating
from spec_cascade_jax.models.errors import (HFCheckpointError, HFCheckpointNotFoundError,
                                            read_hf_config)

SUPPORTED_MODEL_TYPES = MODEL_TYPES
ARCHITECTURES = {"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
                 "gemma3_text": "Gemma3ForCausalLM", "llama": "LlamaForCausalLM",
                 "qwen2": "Qwen2ForCausalLM"}
_GEMMAS = ("gemma", "gemma2", "gemma3_text")
_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
                "gelu_fast": "gelu_tanh", "gelu": "gelu", "silu": "silu", "swish": "silu"}
_LAYER_KINDS = {"full_attention": "global", "sliding_attention": "local"}
# transformers' defaults where a config.json leaves a field out.
_TIED_DEFAULT = {"gemma": True, "gemma2": True, "gemma3_text": True, "llama": False,
                 "qwen2": False}
_ROPE_THETA_DEFAULT = {"gemma3_text": 1e6}


# ----------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------

def _rope_scaling(spec: dict | None, where: str) -> dict[str, Any]:
  """A rope dict (rope_scaling or rope_parameters) -> our rope_* fields."""
  if not spec:
    return {}
  kind = spec.get("rope_type", spec.get("type", "default"))
  if kind in (None, "default"):
    return {}
  if kind == "linear":
    return dict(rope_scaling="linear", rope_factor=float(spec["factor"]))
  if kind == "llama3":
    return dict(rope_scaling="llama3", rope_factor=float(spec["factor"]),
                rope_low_freq_factor=float(spec["low_freq_factor"]),
                rope_high_freq_factor=float(spec["high_freq_factor"]),
                rope_original_max_positions=int(spec["original_max_position_embeddings"]))
  raise ValueError(f"{where} rope type {kind!r} is not supported; supported: 'default', "
                   "'linear', 'llama3'.")


def _rope_fields(d: dict, model_type: str) -> dict[str, Any]:
  params = d.get("rope_parameters")
  default_theta = _ROPE_THETA_DEFAULT.get(model_type, 1e4)
  if model_type == "gemma3_text":
    if params and "full_attention" in params:     # transformers >= 5
      full, local = params["full_attention"] or {}, params.get("sliding_attention") or {}
    else:
      full = dict(d.get("rope_scaling") or {}, rope_theta=d.get("rope_theta", default_theta))
      local = {"rope_theta": d.get("rope_local_base_freq", 1e4)}
    if _rope_scaling(local, "sliding_attention"):
      raise ValueError("scaled rope on local (sliding-window) layers is not supported.")
    return dict(rope_theta=float(full.get("rope_theta", default_theta)),
                rope_local_theta=float(local.get("rope_theta", 1e4)),
                **_rope_scaling(full, "full_attention"))
  spec = params if params else dict(d.get("rope_scaling") or {})
  theta = (params or {}).get("rope_theta", d.get("rope_theta", default_theta))
  if float((params or d).get("partial_rotary_factor", 1.0)) != 1.0:
    raise ValueError("partial_rotary_factor != 1 is not supported.")
  return dict(rope_theta=float(theta), **_rope_scaling(spec, "rope"))


def _layer_types(d: dict, model_type: str, n: int) -> tuple[str, ...]:
  if d.get("layer_types"):
    unknown = sorted(set(d["layer_types"]) - set(_LAYER_KINDS))
    if unknown:
      raise ValueError(f"layer_types {unknown} are not supported; supported: "
                       f"{sorted(_LAYER_KINDS)}.")
    kinds = tuple(_LAYER_KINDS[t] for t in d["layer_types"])
  elif model_type == "gemma2":
    kinds = alternating(n, 2)
  elif model_type == "gemma3_text":
    kinds = alternating(n, int(d.get("sliding_window_pattern")
                               or d.get("_sliding_window_pattern") or 6))
  elif model_type == "qwen2" and d.get("use_sliding_window"):
    start = int(d.get("max_window_layers", n))
    kinds = tuple("local" if i >= start else "global" for i in range(n))
  else:
    kinds = ()
  return kinds if "local" in kinds else ()


def _token_ids(value) -> tuple[int, ...]:
  if value is None:
    return ()
  return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


def config_from_hf(d: dict[str, Any], name: str = "hf") -> LMConfig:
  """A Hugging Face config.json dict -> LMConfig. ValueError on what we cannot run."""
  t = d.get("model_type")
  if t not in SUPPORTED_MODEL_TYPES:
    raise ValueError(f"model_type {t!r} is not a supported decoder-only LM; supported: "
                     f"{list(SUPPORTED_MODEL_TYPES)}.")
  if d.get("use_bidirectional_attention"):
    raise ValueError("use_bidirectional_attention is not supported (an encoder, not an LM).")
  if d.get("mlp_bias"):
    raise ValueError("mlp_bias=true is not supported.")
  hidden, heads = int(d["hidden_size"]), int(d["num_attention_heads"])
  n = int(d["num_hidden_layers"])
  act = (d.get("hidden_act") if t == "gemma" else None) or d.get("hidden_activation") \
      or d.get("hidden_act") or ("gelu_pytorch_tanh" if t in _GEMMAS else "silu")
  if t == "gemma" and act == "gelu":
    act = "gelu_pytorch_tanh"  # Gemma 1's files say "gelu" for the tanh approximation
  if act not in _ACTIVATIONS:
    raise ValueError(f"hidden activation {act!r} is not supported; supported: "
                     f"{sorted(_ACTIVATIONS)}.")
  kinds = _layer_types(d, t, n)
  attention_bias = bool(d.get("attention_bias", False))
  vocab = int(d["vocab_size"])
  pad = d.get("pad_token_id")
  fields = dict(
      model_type=t, name=name, vocab_size=vocab, hidden_size=hidden,
      intermediate_size=int(d["intermediate_size"]), num_layers=n, num_heads=heads,
      num_kv_heads=int(d.get("num_key_value_heads") or heads),
      head_dim=int(d.get("head_dim") or hidden // heads),
      activation=_ACTIVATIONS[act], rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
      norm_plus_one=t in _GEMMAS, embed_scale=t in _GEMMAS,
      post_norms=t in ("gemma2", "gemma3_text"), qk_norm=t == "gemma3_text",
      qkv_bias=attention_bias or t == "qwen2", out_bias=attention_bias,
      layer_types=kinds, sliding_window=int(d["sliding_window"]) if kinds else None,
      tie_word_embeddings=bool(d.get("tie_word_embeddings", _TIED_DEFAULT[t])),
      bos_id=d.get("bos_token_id") if isinstance(d.get("bos_token_id"), int) else None,
      eos_ids=_token_ids(d.get("eos_token_id")),
      pad_id=int(pad) if isinstance(pad, int) and 0 <= pad < vocab else None,
      **_rope_fields(d, t))
  if t in ("gemma2", "gemma3_text"):
    fields["query_pre_attn_scalar"] = float(d.get("query_pre_attn_scalar", 256))
    fields["final_logit_softcap"] = d.get("final_logit_softcapping",
                                          30.0 if t == "gemma2" else None)
  if t == "gemma2":  # Gemma 3's attention ignores attn_logit_softcapping (as transformers)
    fields["attn_logit_softcap"] = d.get("attn_logit_softcapping", 50.0)
  if kinds and t != "gemma3_text" and fields.get("rope_scaling"):
    raise ValueError("rope scaling together with sliding-window layers is supported for "
                     "gemma3_text only.")
  return LMConfig(**fields)


def config_to_hf(c: LMConfig) -> dict[str, Any]:
  """The config.json of `c` in the form of the published checkpoints."""
  d: dict[str, Any] = {
      "architectures": [ARCHITECTURES[c.model_type]], "model_type": c.model_type,
      "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
      "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_layers,
      "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
      "head_dim": c.head_dim, "rms_norm_eps": c.rms_norm_eps,
      "tie_word_embeddings": c.tie_word_embeddings, "rope_theta": c.rope_theta,
      "bos_token_id": c.bos_id, "pad_token_id": c.pad_id,
      "eos_token_id": (c.eos_ids[0] if len(c.eos_ids) == 1 else list(c.eos_ids)) or None,
      "torch_dtype": "float32", "attention_dropout": 0.0,
  }
  act = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "silu": "silu"}[c.activation]
  d["hidden_activation" if c.model_type in ("gemma2", "gemma3_text") else "hidden_act"] = act
  if c.model_type in ("gemma2", "gemma3_text"):
    d["hidden_act"] = act
  scaling = None
  if c.rope_scaling == "linear":
    scaling = {"rope_type": "linear", "factor": c.rope_factor}
  elif c.rope_scaling == "llama3":
    scaling = {"rope_type": "llama3", "factor": c.rope_factor,
               "low_freq_factor": c.rope_low_freq_factor,
               "high_freq_factor": c.rope_high_freq_factor,
               "original_max_position_embeddings": c.rope_original_max_positions}
  d["rope_scaling"] = scaling
  if c.model_type != "qwen2":
    d["attention_bias"] = c.qkv_bias
  if c.qkv_bias != c.out_bias and c.model_type != "qwen2":
    raise ValueError(f"{c.model_type} has one attention_bias flag for q/k/v and o; "
                     f"qkv_bias={c.qkv_bias} out_bias={c.out_bias} cannot be written.")
  if c.layer_types:
    d["layer_types"] = [{"global": "full_attention", "local": "sliding_attention"}[k]
                        for k in c.layer_types]
    d["sliding_window"] = c.sliding_window
    if c.model_type == "qwen2":
      d["use_sliding_window"] = True
      d["max_window_layers"] = c.layer_types.index("local")
  if c.model_type in ("gemma2", "gemma3_text"):
    scalar = float(c.query_pre_attn_scalar or c.head_dim)
    d["query_pre_attn_scalar"] = int(scalar) if scalar.is_integer() else scalar  # an int field
    d["final_logit_softcapping"] = c.final_logit_softcap
    d["attn_logit_softcapping"] = c.attn_logit_softcap
  if c.model_type == "gemma3_text":
    d["rope_local_base_freq"] = (c.rope_local_theta if c.rope_local_theta is not None
                                 else c.rope_theta)
  return d


# ----------------------------------------------------------------------------
# Weight names
# ----------------------------------------------------------------------------

def weight_names(c: LMConfig) -> list[tuple[tuple[str, ...], str, tuple[int, ...]]]:
  """(our parameter path, HF tensor name without the "model." prefix, OUR shape)
  for every parameter but the untied head. Kernels (paths ending in "kernel")
  are the transposes of HF's Linear weights; everything else is stored alike."""
  d, hd = c.hidden_size, c.head_dim
  out = [(("token_embedder", "embedding"), "embed_tokens.weight", (c.vocab_size, d)),
         (("decoder_norm", "scale"), "norm.weight", (d,))]
  if c.post_norms:
    norms = {"pre_attention_norm": "input_layernorm",
             "post_attention_norm": "post_attention_layernorm",
             "pre_mlp_norm": "pre_feedforward_layernorm",
             "post_mlp_norm": "post_feedforward_layernorm"}
  else:
    norms = {"pre_attention_norm": "input_layernorm",
             "pre_mlp_norm": "post_attention_layernorm"}
  proj = {"query": ("q_proj", c.num_heads * hd), "key": ("k_proj", c.num_kv_heads * hd),
          "value": ("v_proj", c.num_kv_heads * hd)}
  for i in range(c.num_layers):
    layer, hf = f"layers_{i}", f"layers.{i}"
    for ours, theirs in norms.items():
      out.append(((layer, ours, "scale"), f"{hf}.{theirs}.weight", (d,)))
    for ours, (theirs, width) in proj.items():
      out.append(((layer, "attention", ours, "kernel"), f"{hf}.self_attn.{theirs}.weight",
                  (d, width)))
      if c.qkv_bias:
        out.append(((layer, "attention", ours, "bias"), f"{hf}.self_attn.{theirs}.bias",
                    (width,)))
    out.append(((layer, "attention", "out", "kernel"), f"{hf}.self_attn.o_proj.weight",
                (c.num_heads * hd, d)))
    if c.out_bias:
      out.append(((layer, "attention", "out", "bias"), f"{hf}.self_attn.o_proj.bias", (d,)))
    if c.qk_norm:
      out.append(((layer, "attention", "query_norm", "scale"),
                  f"{hf}.self_attn.q_norm.weight", (hd,)))
      out.append(((layer, "attention", "key_norm", "scale"),
                  f"{hf}.self_attn.k_norm.weight", (hd,)))
    for ours, theirs, shape in (("wi_0", "gate_proj", (d, c.intermediate_size)),
                                ("wi_1", "up_proj", (d, c.intermediate_size)),
                                ("wo", "down_proj", (c.intermediate_size, d))):
      out.append(((layer, "mlp", ours, "kernel"), f"{hf}.mlp.{theirs}.weight", shape))
  return out


# ----------------------------------------------------------------------------
# safetensors, read without a framework
# ----------------------------------------------------------------------------

def _np_dtype(code: str):
  if code == "BF16":
    import ml_dtypes  # a jax dependency
    return np.dtype(ml_dtypes.bfloat16)
  table = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
  if code not in table:
    raise KeyError(code)
  return np.dtype(table[code])


def safetensors_files(path: str) -> list[str]:
  """The weight files of a Hugging Face directory: model.safetensors, or the
  shards that model.safetensors.index.json lists (each checked to exist)."""
  single = os.path.join(path, "model.safetensors")
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.isfile(single):
    return [single]
  if not os.path.isfile(index):
    others = [f for f in ("pytorch_model.bin", "pytorch_model.bin.index.json")
              if os.path.isfile(os.path.join(path, f))]
    hint = (f" Found {others[0]}: convert it to safetensors (transformers: "
            "`model.save_pretrained(dir, safe_serialization=True)`)." if others else "")
    raise HFCheckpointNotFoundError(
        f"No weights in {path}: expected model.safetensors or "
        f"model.safetensors.index.json with its shards.{hint}")
  try:
    with open(index) as f:
      weight_map = json.load(f)["weight_map"]
    shards = sorted(set(weight_map.values()))
  except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
    raise HFCheckpointError(f"{index}: not a valid shard index ({e}); re-download "
                            "it.") from e
  files = [os.path.join(path, s) for s in shards]
  for shard in files:
    if not os.path.isfile(shard):
      raise HFCheckpointNotFoundError(f"{shard} (listed in {index}) is missing; "
                                      "download every shard.")
  return files


class _SafetensorsDir:
  """Tensor name -> (file, dtype, shape, byte range), across shards; arrays on demand."""

  def __init__(self, path: str):
    self.path, self.entries, self._maps = path, {}, {}
    files = safetensors_files(path)
    for file in files:
      self._read_header(file)

  def _read_header(self, file: str):
    size = os.path.getsize(file)
    try:
      with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or 8 + n > size:
          raise ValueError(f"header length {n} does not fit a {size}-byte file")
        header = json.loads(f.read(n))
      for name, meta in header.items():
        if name == "__metadata__":
          continue
        begin, end = meta["data_offsets"]
        dtype = _np_dtype(meta["dtype"])
        shape = tuple(int(s) for s in meta["shape"])
        if 8 + n + end > size or end - begin != dtype.itemsize * int(np.prod(shape)):
          raise ValueError(f"tensor {name!r} lies outside the file or has the wrong size")
        self.entries[name] = (file, dtype, shape, 8 + n + begin)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
      raise HFCheckpointError(
          f"{file} could not be read as safetensors ({type(e).__name__}: {e}); the file "
          "is truncated or corrupt. Re-download or re-save it.") from e

  def shape(self, name: str) -> tuple[int, ...]:
    return self.entries[name][2]

  def origin(self, name: str) -> str:
    return self.entries[name][0]

  def array(self, name: str) -> np.ndarray:
    file, dtype, shape, offset = self.entries[name]
    if file not in self._maps:
      self._maps[file] = np.memmap(file, dtype=np.uint8, mode="r")
    count = int(np.prod(shape))
    raw = self._maps[file][offset:offset + count * dtype.itemsize]
    return raw.view(dtype).reshape(shape).astype(np.float32)


def write_safetensors(tensors: dict[str, np.ndarray], file: str) -> None:
  """float32 tensors -> one safetensors file (metadata {"format": "pt"}, as
  transformers writes)."""
  header, offset, order = {"__metadata__": {"format": "pt"}}, 0, sorted(tensors)
  for name in order:
    nbytes = tensors[name].size * 4
    header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                    "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
  with open(file, "wb") as f:
    f.write(len(blob).to_bytes(8, "little"))
    f.write(blob)
    for name in order:
      f.write(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())


# ----------------------------------------------------------------------------
# Loading and saving
# ----------------------------------------------------------------------------

# Tensors a checkpoint may hold that the model does not use.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def load_hf_lm(path: str, dtype: str = "float32"):
  """Reads a Hugging Face Gemma / Gemma 2 / Gemma 3 (text) / Llama / Qwen 2
  directory into an `LMModel` (parameters float32; `dtype` the compute dtype).

  Raises HFCheckpointNotFoundError (a FileNotFoundError) for missing files and
  HFCheckpointError (a ValueError) for anything else that does not fit, each
  naming the file, the tensor and the fix.
  """
  if not os.path.isdir(path):
    raise HFCheckpointNotFoundError(
        f"{path} is not a directory; pass the Hugging Face model directory holding "
        "config.json and model.safetensors.")
  d = read_hf_config(path)
  cfg_file = os.path.join(path, "config.json")
  try:
    cfg = config_from_hf(d, name=os.path.basename(os.path.normpath(path)))
    cfg = cfg.replace(dtype=dtype)
  except (ValueError, KeyError, TypeError) as e:
    raise HFCheckpointError(f"{cfg_file}: unsupported configuration: {e}") from e
  st = _SafetensorsDir(path)
  prefix = "model." if "model.embed_tokens.weight" in st.entries else ""
  used, params = set(), {}

  def fetch(name: str, shape: tuple[int, ...], param: str) -> np.ndarray:
    if name not in st.entries:
      raise HFCheckpointError(
          f"Tensor {name!r} (for parameter {param}) is missing from the weights in "
          f"{path}. The checkpoint is incomplete or does not match its config.json "
          f"({cfg.model_type}); re-save it with `save_pretrained`.")
    want = shape[::-1] if param.endswith("kernel") else shape  # HF Linear: [out, in]
    if st.shape(name) != want:
      raise HFCheckpointError(
          f"{st.origin(name)}: tensor {name!r} (parameter {param}) has shape "
          f"{st.shape(name)} but config.json implies {want}. The weights and config.json "
          "belong to different models; use the config.json saved with them.")
    used.add(name)
    x = st.array(name)
    return x.T if param.endswith("kernel") else x

  for our_path, hf_name, shape in weight_names(cfg):
    x = fetch(prefix + hf_name, shape, "/".join(our_path))
    node = params
    for key in our_path[:-1]:
      node = node.setdefault(key, {})
    node[our_path[-1]] = x
  if not cfg.tie_word_embeddings:
    params["logits_dense"] = {"kernel": fetch("lm_head.weight",
                                              (cfg.hidden_size, cfg.vocab_size),
                                              "logits_dense/kernel")}
  unused = sorted(k for k in st.entries if k not in used and k != "lm_head.weight"
                  and not k.endswith(_IGNORED_SUFFIXES))
  if unused:
    warnings.warn(f"{path}: {len(unused)} tensors not used by {cfg.model_type}: "
                  f"{unused[:5]}{' ...' if len(unused) > 5 else ''}")
  import jax.numpy as jnp  # after the checks: a bad directory fails fast
  from spec_cascade_jax.models.lm.model import LMModel
  to_jax = lambda t: ({k: to_jax(v) for k, v in t.items()} if isinstance(t, dict)  # noqa: E731
                      else jnp.asarray(np.ascontiguousarray(t), jnp.float32))
  return LMModel(config=cfg, params=to_jax(params))


def save_hf_lm(model, path: str) -> None:
  """Writes config.json + model.safetensors (float32) that
  `AutoModelForCausalLM.from_pretrained(path)` loads with no missing or
  unexpected keys. Tied models store only the embedding, as save_pretrained."""
  c = model.config
  hf_cfg = config_to_hf(c)
  tensors: dict[str, np.ndarray] = {}
  for our_path, hf_name, _ in weight_names(c):
    x = model.params
    for key in our_path:
      x = x[key]
    x = np.asarray(x, np.float32)
    tensors["model." + hf_name] = x.T if our_path[-1] == "kernel" else x
  if not c.tie_word_embeddings:
    tensors["lm_head.weight"] = np.asarray(model.params["logits_dense"]["kernel"],
                                           np.float32).T
  os.makedirs(path, exist_ok=True)
  write_safetensors(tensors, os.path.join(path, "model.safetensors"))
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_cfg, f, indent=2, sort_keys=True)
