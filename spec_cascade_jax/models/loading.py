"""`load_model(path_or_name)`: one entry point for every model source.

Dispatch, first match wins:
  1. a bundled name: `spec_cascade_jax/assets/models/<name>/` (our format);
  2. a directory whose config.json carries our format marker -> `checkpoint`;
  3. a directory with a Hugging Face config.json and weights
     (model.safetensors, pytorch_model.bin or a sharded index), the family
     chosen by config.json's `model_type` through the registry
     (`families.HF_MODEL_TYPES`): T5 -> `t5.hf`, Gemma / Gemma 2 / Gemma 3
     (text) / Llama / Qwen 2 -> `lm.hf`; no `model_type` reads as T5;
  4. a t5x checkpoint: the msgpack `checkpoint` file, a `checkpoint_<step>`
     directory (msgpack or Orbax) or their parent -> `t5.t5x_checkpoint`.
Anything else is an error that says what was found and what is expected.
"""

from __future__ import annotations

import os

from spec_cascade_jax.models import checkpoint as own
from spec_cascade_jax.models import families
from spec_cascade_jax.models.t5 import t5x_checkpoint

ASSETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "assets", "models")
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
               "pytorch_model.bin.index.json")
# A file inside a model directory stands for its directory.
_DIR_FILES = (own.CONFIG_FILE, own.PARAMS_FILE) + _HF_WEIGHTS
# Hugging Face `model_type` -> family name (the registry's, models/families.py).
HF_MODEL_TYPES = families.HF_MODEL_TYPES


def bundled_models() -> list[str]:
  """Names of the models shipped in `spec_cascade_jax/assets/models/`."""
  if not os.path.isdir(ASSETS_DIR):
    return []
  return sorted(n for n in os.listdir(ASSETS_DIR)
                if own.is_saved_model(os.path.join(ASSETS_DIR, n)))


def _describe(directory: str) -> str:
  names = sorted(os.listdir(directory))
  return f"{names[:12]}{' ...' if len(names) > 12 else ''}" if names else "an empty directory"


def _load_directory(path: str, dtype: str | None):
  cfg = own.read_config_json(path)
  if cfg is not None:
    if cfg.get("format") == own.FORMAT_NAME:
      return own.load_saved_model(path, dtype=dtype)
    weights = [w for w in _HF_WEIGHTS if os.path.isfile(os.path.join(path, w))]
    if weights:
      return _load_hf(path, cfg, dtype)
    raise FileNotFoundError(
        f"{path!r} has a config.json but no weights: expected a spec_cascade_jax"
        f" config.json (with \"format\": {own.FORMAT_NAME!r}) plus {own.PARAMS_FILE}, or a"
        f" Hugging Face config.json plus one of {list(_HF_WEIGHTS)}. Found"
        f" {_describe(path)}.")
  try:
    t5x_checkpoint.find_t5x_checkpoint(path)
  except FileNotFoundError:
    raise FileNotFoundError(
        f"{path!r} is not a model directory. Found {_describe(path)}; expected one of:"
        f" a spec_cascade_jax model (config.json + {own.PARAMS_FILE}), a Hugging Face T5 or"
        f" decoder-only LM (config.json + model.safetensors or pytorch_model.bin), or a"
        f" t5x checkpoint"
        " (a `checkpoint` msgpack file, an Orbax checkpoint, or `checkpoint_<step>`"
        " subdirectories).") from None
  return t5x_checkpoint.load_t5x_checkpoint(path, dtype=dtype)


def _load_hf(path: str, cfg: dict, dtype: str | None):
  """A Hugging Face directory, by its config.json's model_type (none: T5's
  older files)."""
  model_type = cfg.get("model_type")
  family = families.family_for_hf_model_type("t5" if model_type is None else model_type)
  if family is None:
    from spec_cascade_jax.models.errors import HFCheckpointError
    raise HFCheckpointError(
        f"{os.path.join(path, 'config.json')}: model_type={model_type!r} is not supported;"
        f" supported model types: {sorted(HF_MODEL_TYPES)}. Point to a checkpoint of one"
        " of these families.")
  return family.load_hf(path, dtype)


def load_model(path_or_name: str, dtype: str | None = None):
  """Loads a model from a bundled name or a path (see the module docstring).

  Args:
    path_or_name: e.g. "demo-drafter", "/models/t5-small-hf", or
      "/ckpts/t5_1_1_small/checkpoint_1000000".
    dtype: activation dtype ("float32" / "bfloat16"); None keeps the stored
      config's. Parameters are always float32.
  Returns:
    a model of one of the families (models/families.py): a
    `spec_cascade_jax.models.t5.T5Model`, or a `models.lm.LMModel` (a Hugging
    Face decoder-only LM directory, or one saved in our format).
  """
  name = os.fspath(path_or_name)
  bundled = bundled_models()
  if name in bundled:
    return own.load_saved_model(os.path.join(ASSETS_DIR, name), dtype=dtype)
  path = os.path.expanduser(name)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"Model {name!r} is neither a bundled model name (bundled:"
        f" {bundled or 'none installed'}) nor an existing path. Pass a bundled name, or"
        " the path of a spec_cascade_jax model directory, a Hugging Face T5 or decoder-only"
        " LM directory"
        " (config.json + model.safetensors) or a t5x checkpoint.")
  if os.path.isfile(path):
    if os.path.basename(path) in _DIR_FILES:
      return _load_directory(os.path.dirname(os.path.abspath(path)), dtype)
    return t5x_checkpoint.load_t5x_checkpoint(path, dtype=dtype)
  return _load_directory(path, dtype)
