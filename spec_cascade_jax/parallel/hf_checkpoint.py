"""Load a Hugging Face decoder-only LM straight into sharded arrays, reading only local slices.

`models.lm.hf.load_hf_lm` reads every tensor whole onto the host. For an LM
larger than one device (or one host), `load_hf_lm_sharded`:

  1. reads config.json and the safetensors headers only (names, dtypes,
     shapes: `safe_open` memory-maps each file and parses its header);
  2. builds the parameter tree's shapes with `jax.eval_shape(LMModel.init)`
     (nothing allocated), its shardings with `partitioning.param_shardings`
     (parallel/lm_axes.py), and checks each tensor's shape against them;
  3. for every parameter, `jax.make_array_from_callback(shape, sharding, cb)`:
     `cb(index)` is called once per addressable device with that device's
     block and reads just that block with `safe_open(...).get_slice(name)[...]`
     (a slice of the memory map: only those bytes are touched), once per
     distinct block in a process. A (2, 4) mesh reads a quarter of each
     "model"-sharded kernel per device.

Names and layouts are models/lm/hf.py's (`weight_names`): HF Linear weights
are [out, in] and our kernels [in, out], so a kernel block [i0:i1, o0:o1] is
the transpose of HF's slice [o0:o1, i0:i1] (read transposed, never whole).
The five supported families store q/k/v and gate/up as separate tensors, so
no tensor is split or fused here; a fused checkpoint (e.g. a qkv_proj) fails
with the missing tensor's name. Parameters are float32 in memory whatever the
stored dtype (float32, float16, bfloat16), as `load_hf_lm`.
"""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np
from jax.sharding import Mesh

from spec_cascade_jax.models.lm import hf as hf_lm
from spec_cascade_jax.models.errors import HFCheckpointError, HFCheckpointNotFoundError
from spec_cascade_jax.parallel import partitioning as pt

Index = tuple[slice, ...]


def _read_st_block(name: str, tensor, index: Index) -> np.ndarray:
  """One safetensors slice read, `index` in the stored layout (a seam: tests
  record the blocks read here)."""
  return np.asarray(tensor[index])


class _Tensor:
  """One parameter's tensor in the checkpoint: reads our-layout blocks as float32,
  each distinct block once (devices that replicate a block, e.g. along "data",
  share the read)."""

  def __init__(self, handle, name: str, transposed: bool):
    self.slice, self.name, self.transposed = handle.get_slice(name), name, transposed
    self.shape = tuple(self.slice.get_shape())
    self._blocks: dict = {}

  def block(self, index: Index) -> np.ndarray:
    ours = self.shape[::-1] if self.transposed else self.shape
    key = tuple(s.indices(n)[:2] for s, n in zip(index, ours))
    if key not in self._blocks:
      if self.transposed:        # ours [in, out] = HF [out, in].T
        x = _read_st_block(self.name, self.slice, tuple(index[::-1])).T
      else:
        x = _read_st_block(self.name, self.slice, tuple(index))
      self._blocks[key] = x.astype(np.float32)
    return self._blocks[key]


def load_hf_lm_sharded(path: str, mesh: Mesh, rules: pt.Rules = pt.STANDARD_RULES,
                       dtype: str = "float32") -> pt.ShardedModel:
  """A Hugging Face Gemma / Gemma 2 / Gemma 3 (text) / Llama / Qwen 2 directory as
  a ShardedModel whose parameters live on `mesh`.

  Args:
    path: the model directory (config.json + model.safetensors, or
      model.safetensors.index.json with its shards).
    mesh: ("data", "model") mesh; rules: logical axis rules.
    dtype: the compute dtype, as `load_hf_lm`.
  Every process of a multi-host job calls this with the same arguments; each
  reads only the blocks of its own devices. Equal to
  `shard_model(load_hf_lm(path, dtype), mesh, rules)`.
  """
  import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy for safetensors' reads)
  from safetensors import safe_open

  from spec_cascade_jax.models.lm import LMModel

  mesh, rules = pt._check_mesh(mesh), pt._check_rules(rules)
  if not os.path.isdir(path):
    raise HFCheckpointNotFoundError(
        f"{path} is not a directory; pass the Hugging Face model directory holding "
        "config.json and model.safetensors.")
  try:
    config = hf_lm.config_from_hf(hf_lm.read_hf_config(path),
                                  name=os.path.basename(os.path.normpath(path)))
    config = config.replace(dtype=dtype)
  except (ValueError, KeyError, TypeError) as e:
    if isinstance(e, HFCheckpointError):
      raise
    raise HFCheckpointError(f"{os.path.join(path, 'config.json')}: unsupported "
                            f"configuration: {e}") from e
  abstract = jax.eval_shape(lambda: LMModel.init(config, jax.random.PRNGKey(0), jit=False))
  shardings = pt.param_shardings(abstract, mesh, rules)
  wanted = list(hf_lm.weight_names(config))
  if not config.tie_word_embeddings:
    wanted.append((("logits_dense", "kernel"), "lm_head.weight",
                   (config.hidden_size, config.vocab_size)))

  with contextlib.ExitStack() as stack:
    where = {}
    for file in hf_lm.safetensors_files(path):
      handle = stack.enter_context(safe_open(file, framework="numpy"))
      where.update({name: (file, handle) for name in handle.keys()})
    prefix = "model." if "model.embed_tokens.weight" in where else ""
    params = {}
    for our_path, hf_name, shape in wanted:
      name = hf_name if hf_name == "lm_head.weight" else prefix + hf_name
      param = "/".join(our_path)
      if name not in where:
        raise HFCheckpointError(
            f"Tensor {name!r} (for parameter {param}) is missing from the weights in "
            f"{path}. The checkpoint is incomplete or does not match its config.json "
            f"({config.model_type}); re-save it with `save_pretrained`.")
      kernel = our_path[-1] == "kernel"
      tensor = _Tensor(where[name][1], name, transposed=kernel)
      want = tuple(shape[::-1]) if kernel else tuple(shape)
      if tensor.shape != want:
        raise HFCheckpointError(
            f"{where[name][0]}: tensor {name!r} (parameter {param}) has shape "
            f"{tensor.shape} but config.json implies {want}. The weights and config.json "
            "belong to different models; use the config.json saved with them.")
      sharding = shardings.params
      for key in our_path:
        sharding = sharding[key]
      node = params
      for key in our_path[:-1]:
        node = node.setdefault(key, {})
      node[our_path[-1]] = jax.make_array_from_callback(tuple(shape), sharding,
                                                        tensor.block, dtype=np.float32)
  return pt.ShardedModel(model=LMModel(config=config, params=params), mesh=mesh, rules=rules)
