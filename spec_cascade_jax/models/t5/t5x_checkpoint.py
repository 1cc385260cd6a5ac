"""Read and write t5x checkpoints (msgpack + TensorStore/zarr, or Orbax).

Layout t5x writes (`t5x/checkpoints.py`, VERSION 3):

    <model_dir>/checkpoint_<step>/checkpoint          msgpack (flax serialization)
    <model_dir>/checkpoint_<step>/target.encoder.layers_0.attention.query.kernel/
                                                      zarr array (.zarray + chunks)

The msgpack holds `{"version": 3, "optimizer": {"target": params, "state":
{...}}}` (pre-2021 checkpoints: `{"target": ..., "state": ...}` at the top).
Partitioned arrays are written with TensorStore and replaced in the msgpack by
their spec as a dict, `{"driver": "zarr", "kvstore": {"driver": "file",
"path": "target.encoder..."}, "metadata": {...}}`, whose path is relative to
the checkpoint directory so the checkpoint can be moved; unpartitioned (small)
arrays are inline. Older specs put `"path"` beside `"kvstore"`; GCS checkpoints
say `"driver": "gcs"` with a bucket. Newer t5x can write an Orbax PyTree
checkpoint instead (`_METADATA`, `manifest.ocdbt`, `d/`, ...) with the same
`target` subtree.

The parameter tree (below `target`) uses t5x names, e.g.
`encoder/layers_0/attention/query/kernel` [D, H*Dkv] and
`token_embedder/embedding` [V, D]; see `expected_param_shapes`.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any, Mapping

import numpy as np

from spec_cascade_jax.models.params import flatten_params, unflatten_params
from spec_cascade_jax.models.t5.config import T5Config

_VERSION = 3                           # the t5x msgpack VERSION we write
_MSGPACK_NAME = "checkpoint"
# t5x names steps checkpoint_<step>; an Orbax CheckpointManager names them <step>.
_STEP_DIR = re.compile(r"^(?:checkpoint_)?(\d+)$")
# Files any Orbax checkpoint directory holds (one is enough to recognise it).
_ORBAX_MARKERS = ("_METADATA", "manifest.ocdbt", "_CHECKPOINT_METADATA", "_sharding")
# t5x aims for 64 MiB zarr chunks: large enough for object stores, small
# enough that any partitioning writes whole chunks.
_CHUNK_BYTES = 64 * 1024 * 1024
# The attention blocks whose t5x kernels are stored 3-D ([D, H, Dkv] or [H, Dkv, D]).
ATTN_BLOCKS = ("attention", "self_attention", "encoder_decoder_attention")


# ----------------------------------------------------------------------------
# Parameter names and shapes.
# ----------------------------------------------------------------------------


def _mlp_shapes(prefix: str, config: T5Config) -> dict[str, tuple[int, ...]]:
  d, f = config.d_model, config.d_ff
  if config.gated:
    return {f"{prefix}/mlp/wi_0/kernel": (d, f), f"{prefix}/mlp/wi_1/kernel": (d, f),
            f"{prefix}/mlp/wo/kernel": (f, d)}
  return {f"{prefix}/mlp/wi/kernel": (d, f), f"{prefix}/mlp/wo/kernel": (f, d)}


def _attention_shapes(prefix: str, config: T5Config) -> dict[str, tuple[int, ...]]:
  d, inner = config.d_model, config.num_heads * config.d_kv
  shapes = {f"{prefix}/{n}/kernel": (d, inner) for n in ("query", "key", "value")}
  shapes[f"{prefix}/out/kernel"] = (inner, d)
  return shapes


def expected_param_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
  """Every parameter of a t5x T5 with `config`: '/'-joined path -> shape.

  Paths are relative to the parameter tree (no "target/" prefix), e.g.
  `decoder/layers_0/encoder_decoder_attention/query/kernel: (D, H * Dkv)`.
  """
  d, h = config.d_model, config.num_heads
  shapes: dict[str, tuple[int, ...]] = {
      "token_embedder/embedding": (config.vocab_size, d),
      "encoder/relpos_bias/rel_embedding": (h, config.relative_attention_num_buckets),
      "encoder/encoder_norm/scale": (d,),
      "decoder/relpos_bias/rel_embedding": (h, config.relative_attention_num_buckets),
      "decoder/decoder_norm/scale": (d,),
  }
  for i in range(config.num_layers):
    p = f"encoder/layers_{i}"
    shapes[f"{p}/pre_attention_layer_norm/scale"] = (d,)
    shapes.update(_attention_shapes(f"{p}/attention", config))
    shapes[f"{p}/pre_mlp_layer_norm/scale"] = (d,)
    shapes.update(_mlp_shapes(p, config))
  for i in range(config.n_decoder_layers):
    p = f"decoder/layers_{i}"
    shapes[f"{p}/pre_self_attention_layer_norm/scale"] = (d,)
    shapes.update(_attention_shapes(f"{p}/self_attention", config))
    shapes[f"{p}/pre_cross_attention_layer_norm/scale"] = (d,)
    shapes.update(_attention_shapes(f"{p}/encoder_decoder_attention", config))
    shapes[f"{p}/pre_mlp_layer_norm/scale"] = (d,)
    shapes.update(_mlp_shapes(p, config))
  if not config.tie_word_embeddings:
    shapes["decoder/logits_dense/kernel"] = (d, config.vocab_size)
  return shapes


def _count_layers(flat: Mapping[str, Any], stack: str) -> int:
  idx = {int(m.group(1)) for p in flat
         if (m := re.match(rf"^{stack}/layers_(\d+)/", p))}
  # Gaps (layers_0, layers_2) are caught by the shape check that follows.
  return max(idx) + 1 if idx else 0


def infer_config(flat_shapes: Mapping[str, tuple[int, ...]], *,
                 relative_attention_max_distance: int = 128,
                 name: str = "t5x") -> T5Config:
  """The T5Config whose `expected_param_shapes` these parameters have.

  T5 1.0 (relu MLP `mlp/wi`, tied output) vs 1.1 (gated `mlp/wi_0`/`wi_1`,
  untied `decoder/logits_dense`) is read off the names; sizes off the shapes.
  The bucket *distance* is not stored anywhere, hence the keyword (t5x's
  default is 128).
  """
  def need(path):
    if path not in flat_shapes:
      raise ValueError(
          f"Cannot infer the T5 config: parameter {path!r} is missing (found "
          f"{len(flat_shapes)} parameters, e.g. {sorted(flat_shapes)[:4]}). This does not"
          " look like a t5x T5 encoder-decoder; pass `config=` explicitly if it is one.")
    return tuple(flat_shapes[path])

  vocab, d_model = need("token_embedder/embedding")
  heads, buckets = need("encoder/relpos_bias/rel_embedding")
  inner = need("encoder/layers_0/attention/query/kernel")[-1]
  gated = "encoder/layers_0/mlp/wi_0/kernel" in flat_shapes
  d_ff = need("encoder/layers_0/mlp/wi_0/kernel" if gated
              else "encoder/layers_0/mlp/wi/kernel")[-1]
  if inner % heads:
    raise ValueError(f"Cannot infer d_kv: attention width {inner} is not a multiple of"
                     f" the {heads} heads in encoder/relpos_bias/rel_embedding.")
  n_enc, n_dec = _count_layers(flat_shapes, "encoder"), _count_layers(flat_shapes, "decoder")
  return T5Config(
      vocab_size=vocab, d_model=d_model, d_kv=inner // heads, d_ff=d_ff, num_heads=heads,
      # None = "same as the encoder", as in the presets, so configs compare equal.
      num_layers=n_enc, num_decoder_layers=None if n_dec == n_enc else n_dec,
      relative_attention_num_buckets=buckets,
      relative_attention_max_distance=relative_attention_max_distance,
      feed_forward_proj="gated-gelu" if gated else "relu",
      tie_word_embeddings="decoder/logits_dense/kernel" not in flat_shapes, name=name)


def check_param_shapes(flat: Mapping[str, Any], config: T5Config, source: str) -> None:
  """Raises a ValueError naming `source` and the first offending parameters."""
  expected = expected_param_shapes(config)
  missing = [p for p in expected if p not in flat]
  if missing:
    raise ValueError(
        f"{source}: parameter {missing[0]!r} is missing ({len(missing)} missing in all:"
        f" {missing[:5]}{' ...' if len(missing) > 5 else ''}) for config"
        f" {config.name!r}. Pass the config that matches this checkpoint, or none to"
        " infer it from the parameter shapes.")
  extra = sorted(p for p in flat if p not in expected)
  if extra:
    raise ValueError(
        f"{source}: unexpected parameter {extra[0]!r} ({len(extra)} in all:"
        f" {extra[:5]}) for config {config.name!r}: the checkpoint has a different"
        " architecture (more layers, or a tied/untied head or relu/gated MLP that"
        " differs). Pass the matching config, or none to infer it.")
  for p, shape in expected.items():
    got = tuple(np.shape(flat[p]))
    if got != shape:
      raise ValueError(
          f"{source}: parameter {p!r} has shape {got}, but config {config.name!r}"
          f" expects {shape}. Pass the config that matches this checkpoint (or none,"
          " to infer it from the shapes).")


def _to_2d_attention(flat: dict[str, Any]) -> dict[str, Any]:
  """Older t5x / mesh-tf kernels: [D, H, Dkv] -> [D, H*Dkv], out [H, Dkv, D] -> [H*Dkv, D]."""
  out = {}
  for p, x in flat.items():
    parts = p.split("/")
    if np.ndim(x) == 3 and len(parts) >= 3 and parts[-3] in ATTN_BLOCKS:
      x = np.asarray(x)
      x = x.reshape(-1, x.shape[-1]) if parts[-2] == "out" else x.reshape(x.shape[0], -1)
    out[p] = x
  return out


def make_model(flat: Mapping[str, Any], config: T5Config, source: str,
               dtype: str | None = None):
  """Checks shapes, casts to float32 and builds a T5Model.

  Parameters are always float32 (t5x stores some in bfloat16); `dtype` is the
  activation dtype of the returned model's config ("float32" / "bfloat16").
  """
  import jax.numpy as jnp  # local: keeps the file readers importable without jax init
  from spec_cascade_jax.models.t5.model import T5Model

  check_param_shapes(flat, config, source)
  if dtype is not None:
    config = config.replace(dtype=dtype)
  params = unflatten_params({p: jnp.asarray(np.asarray(x, np.float32)) for p, x in flat.items()})
  return T5Model(config=config, params=params)


# ----------------------------------------------------------------------------
# Finding the checkpoint.
# ----------------------------------------------------------------------------


def _is_orbax_dir(path: str) -> bool:
  return os.path.isdir(path) and any(
      os.path.exists(os.path.join(path, m)) for m in _ORBAX_MARKERS)


def _orbax_items(path: str) -> list[str]:
  """Orbax CheckpointManager puts each item one level down (<step>/<item>/)."""
  return [os.path.join(path, n) for n in sorted(os.listdir(path))
          if _is_orbax_dir(os.path.join(path, n))]


def _step_dirs(parent: str) -> list[tuple[int, str]]:
  steps = []
  for n in os.listdir(parent):
    m = _STEP_DIR.match(n)   # skips t5x's in-progress "checkpoint_<step>.tmp-<ts>"
    full = os.path.join(parent, n)
    if m and os.path.isdir(full) and (os.path.isfile(os.path.join(full, _MSGPACK_NAME))
                                      or _is_orbax_dir(full) or _orbax_items(full)):
      steps.append((int(m.group(1)), full))
  return sorted(steps)


def find_t5x_checkpoint(path: str) -> tuple[str, str]:
  """Resolves `path` to ("msgpack", <checkpoint file>) or ("orbax", <directory>).

  `path` may be the `checkpoint` file, a `checkpoint_<step>` directory, or a
  model directory holding several `checkpoint_<step>` (the highest step wins).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"t5x checkpoint {path!r} does not exist. Pass a `checkpoint_<step>` directory,"
        " the `checkpoint` msgpack file inside it, or the model directory holding them.")
  if os.path.isfile(path):
    parent = os.path.dirname(os.path.abspath(path))
    return ("orbax", parent) if _is_orbax_dir(parent) else ("msgpack", path)
  # Orbax first: older Orbax also wrote a msgpack named `checkpoint`.
  if _is_orbax_dir(path):
    return "orbax", path
  if os.path.isfile(os.path.join(path, _MSGPACK_NAME)):
    return "msgpack", os.path.join(path, _MSGPACK_NAME)
  steps = _step_dirs(path)
  if steps:
    return find_t5x_checkpoint(steps[-1][1])
  items = _orbax_items(path)
  if len(items) == 1:
    return "orbax", items[0]
  if len(items) > 1:
    raise ValueError(f"{path!r} holds several Orbax items {items}; pass the one with the"
                     " model parameters (its `target` subtree).")
  raise FileNotFoundError(
      f"{path!r} is not a t5x checkpoint: it has no `{_MSGPACK_NAME}` msgpack file, no"
      f" Orbax metadata ({', '.join(_ORBAX_MARKERS)}) and no `checkpoint_<step>`"
      f" subdirectory (found: {sorted(os.listdir(path))[:10]}).")


# ----------------------------------------------------------------------------
# Reading.
# ----------------------------------------------------------------------------


def is_tensorstore_spec(x: Any) -> bool:
  """Whether a msgpack leaf is a TensorStore spec (an array stored beside it)."""
  return isinstance(x, Mapping) and "driver" in x and ("kvstore" in x or "path" in x)


def resolve_tensorstore_spec(spec: Mapping[str, Any], ckpt_dir: str,
                             param: str) -> dict[str, Any]:
  """A spec whose kvstore is a local file path under `ckpt_dir` (also used by
  the sharded reader, parallel/checkpoint.py)."""
  spec = dict(spec)
  kv = spec.get("kvstore")
  kv = dict(kv) if isinstance(kv, Mapping) else {}
  if kv.get("driver", "file") not in ("file", "gfile", "gcs"):
    raise ValueError(f"Parameter {param!r}: unsupported TensorStore kvstore driver"
                     f" {kv.get('driver')!r} (t5x writes 'file', 'gfile' or 'gcs').")
  # tensorstore>=0.1.14 puts the relative path in kvstore; older specs (and
  # t5x's GCS specs) put it beside it.
  rel = kv.get("path") or spec.pop("path", None)
  spec.pop("path", None)
  if not rel:
    raise ValueError(f"Parameter {param!r}: TensorStore spec has no path: {spec}.")
  rel = rel.rstrip("/")
  # A spec with an absolute path written on another machine: the array still
  # sits beside the msgpack file under its own name.
  candidates = [os.path.join(ckpt_dir, rel), os.path.join(ckpt_dir, os.path.basename(rel))]
  found = next((c for c in candidates if os.path.isdir(c)), None)
  if found is None:
    raise FileNotFoundError(
        f"Parameter {param!r} is stored with TensorStore at {candidates[0]!r}, which does"
        " not exist. The checkpoint directory is incomplete: copy the whole"
        f" `checkpoint_<step>` directory (the msgpack file and its `{os.path.basename(rel)}`"
        " array directories).")
  spec["kvstore"] = {"driver": "file", "path": found + "/"}
  return spec


def _read_ts(spec: Mapping[str, Any], ckpt_dir: str, param: str) -> np.ndarray:
  import tensorstore as ts

  spec = resolve_tensorstore_spec(spec, ckpt_dir, param)
  try:
    return np.asarray(ts.open(spec, open=True, read=True).result().read().result())
  except Exception as e:  # tensorstore raises ValueError with a status string
    raise ValueError(f"Parameter {param!r}: reading the TensorStore array at"
                     f" {spec['kvstore']['path']!r} failed ({e}). The array files are"
                     " missing or corrupt; copy the checkpoint directory again.") from e


def target_subtree(contents: Any, source: str) -> Mapping[str, Any]:
  """The parameter tree of a t5x checkpoint's msgpack contents (any VERSION)."""
  if not isinstance(contents, Mapping):
    raise ValueError(f"{source}: expected a dict at the top, got {type(contents).__name__}.")
  if "optimizer" in contents:     # t5x VERSION >= 1
    contents = contents["optimizer"]
  if "target" in contents:
    return contents["target"]
  if "token_embedder" in contents:  # a bare parameter tree
    return contents
  raise ValueError(
      f"{source}: no `target` (parameter) subtree; top-level keys are"
      f" {sorted(contents)}. Expected a t5x train-state checkpoint"
      " ({'version', 'optimizer': {'target', 'state'}}).")


class _OrbaxMsgpack(Exception):
  """An old Orbax msgpack: arrays are "PLACEHOLDER://<name>" strings."""


def _read_msgpack(file: str) -> dict[str, np.ndarray]:
  from flax import serialization

  with open(file, "rb") as f:
    raw = f.read()
  if raw.startswith(b"model_checkpoint_path"):
    raise ValueError(f"{file!r} is a TensorFlow (mesh-tf) checkpoint index, not a t5x"
                     " msgpack checkpoint; convert it with t5x's checkpoint_importer first.")
  try:
    contents = serialization.msgpack_restore(raw)
  except Exception as e:
    raise ValueError(
        f"{file!r} is not a readable t5x msgpack checkpoint ({type(e).__name__}: {e});"
        f" it is probably truncated ({len(raw)} bytes) or not a checkpoint. Copy it"
        " again from the source.") from e
  target = target_subtree(contents, repr(file))
  ckpt_dir = os.path.dirname(os.path.abspath(file))
  flat = {}
  # A TensorStore spec is itself a dict: stop descending there.
  def walk(node, prefix):
    for k, v in node.items():
      path = f"{prefix}/{k}" if prefix else str(k)
      if is_tensorstore_spec(v):
        flat[path] = _read_ts(v, ckpt_dir, path)
      elif isinstance(v, Mapping):
        walk(v, path)
      elif isinstance(v, str) and v.startswith("PLACEHOLDER://"):
        raise _OrbaxMsgpack()
      else:
        flat[path] = np.asarray(v)
  walk(target, "")
  return flat


def _read_orbax(directory: str) -> dict[str, np.ndarray]:
  import orbax.checkpoint as ocp

  try:
    contents = ocp.PyTreeCheckpointer().restore(os.path.abspath(directory))
  except Exception as e:
    raise ValueError(f"Orbax checkpoint {directory!r} could not be restored"
                     f" ({type(e).__name__}: {e}). Copy the whole directory again.") from e
  target = target_subtree(contents, repr(directory))
  return {p: np.asarray(x) for p, x in flatten_params(target).items()}


def read_t5x_params(path: str) -> dict[str, np.ndarray]:
  """All parameters of a t5x checkpoint as {'encoder/layers_0/...': array}.

  Arrays keep the stored dtype (often bfloat16); 3-D attention kernels of older
  checkpoints are reshaped to the 2-D t5x layout.
  """
  kind, where = find_t5x_checkpoint(path)
  if kind == "msgpack":
    try:
      flat = _read_msgpack(where)
    except _OrbaxMsgpack:
      flat = _read_orbax(os.path.dirname(os.path.abspath(where)))
  else:
    flat = _read_orbax(where)
  return _to_2d_attention(flat)


def load_t5x_checkpoint(path: str, config: T5Config | None = None,
                        dtype: str | None = None, *,
                        relative_attention_max_distance: int = 128):
  """Loads a t5x T5 checkpoint as a `T5Model` (float32 parameters).

  Args:
    path: a `checkpoint_<step>` directory, its `checkpoint` file, an Orbax
      checkpoint directory, or a model directory (highest step is taken).
    config: the architecture; None infers it from the parameter shapes, with
      `relative_attention_max_distance` (not stored in checkpoints).
    dtype: activation dtype of the model ("float32" / "bfloat16"); None keeps
      the config's (float32 when inferred). Parameters are float32 either way.
  """
  kind, where = find_t5x_checkpoint(path)
  flat = read_t5x_params(where)
  if config is None:
    ckpt_dir = os.path.dirname(where) if kind == "msgpack" else where
    config = infer_config({p: np.shape(x) for p, x in flat.items()},
                          relative_attention_max_distance=relative_attention_max_distance,
                          name="t5x:" + os.path.basename(os.path.normpath(ckpt_dir)))
  return make_model(flat, config, f"t5x checkpoint {os.fspath(path)!r}", dtype)


# ----------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------


def _chunk_shape(shape: tuple[int, ...], itemsize: int) -> list[int]:
  """Largest divisor-aligned chunk below _CHUNK_BYTES, splitting the largest dim first."""
  chunk = list(shape)
  while int(np.prod(chunk)) * itemsize > _CHUNK_BYTES:
    i = int(np.argmax(chunk))
    divisors = [f for f in range(2, chunk[i] + 1) if chunk[i] % f == 0]
    if not divisors:
      break
    chunk[i] //= divisors[0]
  return [max(1, c) for c in chunk]


def _ts_spec(name: str, arr: np.ndarray) -> dict[str, Any]:
  import tensorstore as ts

  dtype = "bfloat16" if arr.dtype.name == "bfloat16" else arr.dtype.str
  spec = {
      "driver": "zarr",
      "dtype": arr.dtype.name,
      "kvstore": {"driver": "file", "path": name.replace("/", ".")},
      "metadata": {"compressor": {"id": "gzip"}, "shape": list(arr.shape),
                   "chunks": _chunk_shape(arr.shape, arr.dtype.itemsize), "dtype": dtype},
  }
  return ts.Spec(spec).to_json()   # normalised, as t5x stores it


def save_t5x_checkpoint(model_or_params: Any, directory: str, step: int, *,
                        inline_threshold: int = 1024, dtype: str | None = None,
                        format: str = "msgpack", overwrite: bool = False) -> str:
  """Writes `<directory>/checkpoint_<step>/` in t5x's layout; returns that path.

  Args:
    model_or_params: a T5Model or its (nested or '/'-flat) parameter dict.
    inline_threshold: "msgpack" format: arrays with fewer elements are stored
      inline in the msgpack (t5x inlines unpartitioned arrays), the rest as
      gzip zarr arrays through TensorStore.
    dtype: cast every parameter to this dtype (t5x often saves "bfloat16");
      None keeps each array's dtype.
    format: "msgpack" (t5x's native layout) or "orbax".
  The directory is written under a temporary name and renamed when complete,
  as t5x does, so a reader never sees half a checkpoint.
  """
  import jax.numpy as jnp
  import tensorstore as ts
  from flax import serialization

  if format not in ("msgpack", "orbax"):
    raise ValueError(f"format={format!r}; use 'msgpack' (t5x native) or 'orbax'.")
  params = getattr(model_or_params, "params", model_or_params)
  flat = flatten_params(params) if any(isinstance(v, Mapping) for v in params.values()) \
      else dict(params)
  flat = {p: np.asarray(x) for p, x in flat.items()}
  if dtype is not None:
    # jnp.dtype resolves "bfloat16" (numpy alone does not know the name).
    flat = {p: x.astype(jnp.dtype(dtype)) for p, x in flat.items()}

  directory = os.path.abspath(os.fspath(directory))
  os.makedirs(directory, exist_ok=True)
  final = os.path.join(directory, f"checkpoint_{int(step)}")
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f"{final!r} already exists; pass overwrite=True to replace it.")
  tmp = tempfile.mkdtemp(prefix=f"checkpoint_{int(step)}.tmp-", dir=directory)
  state = {"step": np.asarray(step, np.int32), "param_states": {}}

  if format == "orbax":
    import orbax.checkpoint as ocp
    os.rmdir(tmp)   # orbax creates its own directory
    ocp.PyTreeCheckpointer().save(tmp, {"target": unflatten_params(flat), "state": state})
  else:
    written = {}
    for p, x in flat.items():
      if x.size < inline_threshold:
        written[p] = x
        continue
      spec = _ts_spec("target/" + p, x)
      abs_spec = dict(spec, kvstore={"driver": "file",
                                     "path": os.path.join(tmp, spec["kvstore"]["path"])})
      ts.open(abs_spec, create=True, open=True).result().write(x).result()
      written[p] = spec
    blob = serialization.msgpack_serialize(
        {"version": _VERSION,
         "optimizer": {"target": unflatten_params(written), "state": state}})
    with open(os.path.join(tmp, _MSGPACK_NAME), "wb") as f:
      f.write(blob)
  if os.path.exists(final):
    import shutil
    shutil.rmtree(final)
  os.rename(tmp, final)
  return final
