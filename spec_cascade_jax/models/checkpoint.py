"""The project's own model format: a directory with two files.

    config.json      config.to_dict() + {"family": "t5" | "lm", "format": "spec_cascade_jax",
                     "format_version": 1, "vocabulary": {"name", "sha256"} where known}
    params.msgpack   flax.serialization.msgpack_serialize(params), the family's parameter
                     names, float32 or bfloat16 ("param_storage_dtype" in config.json)

Any family of `models/families.py` (T5Model, LMModel) is saved and loaded
through the registry: `"family"` picks the config class and the model
builder; a config.json without it is a T5 (files written before the key). The
`format` key tells it apart from a Hugging Face `config.json`. "vocabulary"
records the vocabulary the model was trained with (models/vocab_record.py);
loading puts it on `model.vocabulary`, and decoding it with another
vocabulary is an error (`data.vocab.check_vocabulary`). Each file is
written under a temporary name and renamed, so an interrupted save leaves
either the old file or the new one, never half of one; params go first and
config.json last, so a directory with our config.json always has its params.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import numpy as np

from spec_cascade_jax.models import families
from spec_cascade_jax.models.params import flatten_params, unflatten_params
from spec_cascade_jax.models.vocab_record import VocabularyRecord

FORMAT_NAME = "spec_cascade_jax"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
PARAMS_FILE = "params.msgpack"
_MARKER_KEYS = ("family", "format", "format_version", "param_storage_dtype", "vocabulary")
# The family of a config.json without a "family" key (written before it existed).
DEFAULT_FAMILY = "t5"


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _atomic_write(path: str, data: bytes) -> None:
  fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-",
                             dir=os.path.dirname(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; a saved model is shareable
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


_STORAGE_DTYPES = ("float32", "bfloat16")


def save_model(model: Any, directory: str, param_dtype: str = "float32",
               vocabulary: Any = None) -> str:
  """Writes `model` (a family's model, models/families.py: T5Model, LMModel) to
  `directory`; returns it.

  `vocabulary`: the vocabulary the model was trained with (a loaded one from
  `scj.load_vocabulary`, or a `VocabularyRecord`); recorded in config.json so
  that decoding with another one raises. Default: `model.vocabulary`.

  `param_dtype="bfloat16"` stores the weights rounded to bfloat16 (half the
  bytes, as t5x checkpoints often do); loading casts them back to float32, so
  a round trip equals `round_params(model, "bfloat16")`.
  """
  from flax import serialization

  if param_dtype not in _STORAGE_DTYPES:
    raise ValueError(f"param_dtype={param_dtype!r}; use one of {_STORAGE_DTYPES}.")
  family = families.family_of(model)
  if family is None:
    raise TypeError(f"save_model writes a model of one of the families"
                    f" {sorted(families.FAMILIES)} (T5Model, LMModel); got a"
                    f" {type(model).__name__}. A wrapper (e.g. PaddedVocabulary): save the"
                    " model it wraps.")
  directory = os.fspath(directory)
  os.makedirs(directory, exist_ok=True)
  # numpy, not jax arrays: msgpack_serialize needs host buffers anyway.
  dtype = storage_dtype(param_dtype)
  params = {p: np.asarray(x).astype(dtype) for p, x in flatten_params(model.params).items()}
  blob = serialization.msgpack_serialize(unflatten_params(params))
  config = dict(family.config_to_dict(model.config), family=family.name, format=FORMAT_NAME,
                format_version=FORMAT_VERSION, param_storage_dtype=param_dtype)
  record = _vocabulary_record(vocabulary if vocabulary is not None else model.vocabulary)
  if record is not None:
    config["vocabulary"] = record.to_dict()
  _atomic_write(os.path.join(directory, PARAMS_FILE), blob)
  _atomic_write(os.path.join(directory, CONFIG_FILE),
                (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
  return directory


def _vocabulary_record(vocabulary: Any) -> VocabularyRecord | None:
  """A VocabularyRecord for a loaded vocabulary (its `name` and `fingerprint`),
  or the record itself, or None."""
  if vocabulary is None or isinstance(vocabulary, VocabularyRecord):
    return vocabulary
  if not hasattr(vocabulary, "fingerprint"):
    raise TypeError(f"vocabulary= takes a vocabulary from scj.load_vocabulary or a"
                    f" VocabularyRecord; got a {type(vocabulary).__name__}.")
  return VocabularyRecord(name=vocabulary.name, sha256=vocabulary.fingerprint)


def storage_dtype(name: str) -> np.dtype:
  """numpy dtype for a storage dtype name (bfloat16 comes from ml_dtypes)."""
  import ml_dtypes
  return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def round_params(model: Any, param_dtype: str):
  """`model` with its weights rounded to `param_dtype` and back to float32."""
  import jax
  dtype = storage_dtype(param_dtype)
  params = jax.tree_util.tree_map(
      lambda x: np.asarray(x).astype(dtype).astype(np.float32), model.params)
  return dataclasses.replace(model, params=params)


def read_config_json(directory: str) -> dict[str, Any] | None:
  """The parsed config.json of `directory`, or None if there is none."""
  path = os.path.join(os.fspath(directory), CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path!r} is not valid JSON ({e}); the file is corrupt or"
                     " truncated: save the model again.") from e


def is_saved_model(directory: str) -> bool:
  """True if `directory` holds our format (config.json with the format marker)."""
  if not os.path.isdir(directory):
    return False
  cfg = read_config_json(directory)
  return isinstance(cfg, dict) and cfg.get("format") == FORMAT_NAME


def load_saved_model(directory: str, dtype: str | None = None):
  """Loads a model written by `save_model`.

  `dtype` sets the activation dtype ("float32" / "bfloat16"); parameters are
  float32. Raises FileNotFoundError / ValueError naming the file and the fix.
  """
  from flax import serialization

  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"Model directory {directory!r} does not exist.")
  cfg = read_config_json(directory)
  cfg_path = os.path.join(directory, CONFIG_FILE)
  if cfg is None:
    raise FileNotFoundError(f"{cfg_path!r} is missing: {directory!r} is not a model saved"
                            " with spec_cascade_jax.models.checkpoint.save_model.")
  if cfg.get("format") != FORMAT_NAME:
    raise ValueError(f"{cfg_path!r} has no \"format\": {FORMAT_NAME!r} marker; it is not"
                     " our format (a Hugging Face config.json? use scj.load_model).")
  if int(cfg.get("format_version", 0)) > FORMAT_VERSION:
    raise ValueError(f"{cfg_path!r} has format_version {cfg['format_version']}; this"
                     f" spec_cascade_jax reads up to {FORMAT_VERSION}. Upgrade the package.")
  try:
    family = families.get_family(cfg.get("family", DEFAULT_FAMILY))
  except ValueError as e:
    raise ValueError(f"{cfg_path!r}: {e} The file was written by another version of"
                     " spec_cascade_jax, or edited.") from None
  try:
    config = family.config_from_dict({k: v for k, v in cfg.items() if k not in _MARKER_KEYS})
  except (TypeError, ValueError) as e:
    raise ValueError(f"{cfg_path!r}: invalid model config ({e}).") from e
  params_path = os.path.join(directory, PARAMS_FILE)
  if not os.path.isfile(params_path):
    raise FileNotFoundError(f"{params_path!r} is missing; the model directory is"
                            " incomplete: save the model again or copy the whole directory.")
  with open(params_path, "rb") as f:
    raw = f.read()
  try:
    params = serialization.msgpack_restore(raw)
  except Exception as e:
    raise ValueError(f"{params_path!r} could not be parsed ({type(e).__name__}: {e}); it"
                     f" is probably truncated ({len(raw)} bytes). Save or copy it"
                     " again.") from e
  if not isinstance(params, dict):
    raise ValueError(f"{params_path!r} holds a {type(params).__name__}, not a parameter"
                     " dict.")
  try:
    record = VocabularyRecord.from_dict(cfg.get("vocabulary"))
  except ValueError as e:
    raise ValueError(f"{cfg_path!r}: {e}") from None
  model = family.make_model(flatten_params(params), config, repr(params_path), dtype)
  return model if record is None else dataclasses.replace(model, vocabulary=record)
