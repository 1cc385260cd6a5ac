"""The model families: one registry for `load_model`, our own format and sharding.

Each family is a sub-package of `models/` (`models/t5/`, `models/lm/`) and one
`Family` entry here, which says

  - its name: "t5" or "lm", recorded as `"family"` in our format's config.json;
  - the Hugging Face `model_type`s its loader reads (`load_model` picks the
    family of a Hugging Face directory by config.json's `model_type`);
  - its config class, model class and Hugging Face loader;
  - how our own format (`models/checkpoint.py`) stores its config
    (`config.to_dict()` / `ConfigClass.from_dict`) and builds a model from
    saved parameters (`make_model`).

Classes and loaders are imported on first use, so importing this module (and
`spec_cascade_jax`) loads no family. A new family is a new sub-package, an
entry in FAMILIES and, for `parallel`, a sharding table in
`parallel/partitioning.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Callable, Mapping, NamedTuple


class Parts(NamedTuple):
  """What a family is made of, imported on first use (`Family.parts`)."""
  config_class: type
  model_class: type
  load_hf: Callable[..., Any]      # (path, dtype=...) -> model
  make_model: Callable[..., Any]   # (flat params {"a/b": array}, config, source, dtype) -> model


@dataclasses.dataclass(frozen=True)
class Family:
  """One model family (see the module docstring).

  `model_module` names the module that defines the model class: `family_of`
  looks at a family only once that module is imported (an object cannot be an
  instance of a class that was never loaded), so it never imports a family.
  """
  name: str
  hf_model_types: tuple[str, ...]
  model_module: str
  load_parts: Callable[[], Parts] = dataclasses.field(repr=False, compare=False)

  @property
  def parts(self) -> Parts:
    return self.load_parts()

  @property
  def config_class(self) -> type:
    return self.parts.config_class

  @property
  def model_class(self) -> type:
    return self.parts.model_class

  def load_hf(self, path: str, dtype: str | None = None):
    """A Hugging Face directory of this family (`dtype`: None keeps the loader's)."""
    return self.parts.load_hf(path, **({} if dtype is None else {"dtype": dtype}))

  def config_to_dict(self, config) -> dict[str, Any]:
    """The config as our format's config.json stores it (JSON types)."""
    return config.to_dict()

  def config_from_dict(self, d: Mapping[str, Any]):
    """Inverse of `config_to_dict` (TypeError / ValueError for unknown fields)."""
    return self.config_class.from_dict(dict(d))

  def make_model(self, flat: Mapping[str, Any], config, source: str,
                 dtype: str | None = None):
    """A model from {"a/b/c": array} parameters, names and shapes checked against
    `config` (ValueError naming `source`); float32 parameters, `dtype` the
    activation dtype (None: the config's)."""
    return self.parts.make_model(flat, config, source, dtype)


def _t5_parts() -> Parts:
  from spec_cascade_jax.models.t5 import config, hf, model, t5x_checkpoint
  return Parts(config.T5Config, model.T5Model, hf.load_hf_t5, t5x_checkpoint.make_model)


def _lm_parts() -> Parts:
  from spec_cascade_jax.models.lm import config, hf, model
  return Parts(config.LMConfig, model.LMModel, hf.load_hf_lm, model.make_model)


T5 = Family(name="t5", hf_model_types=("t5", "mt5"),
            model_module="spec_cascade_jax.models.t5.model",
            load_parts=functools.cache(_t5_parts))
LM = Family(name="lm", hf_model_types=("gemma", "gemma2", "gemma3_text", "llama", "qwen2"),
            model_module="spec_cascade_jax.models.lm.model",
            load_parts=functools.cache(_lm_parts))

# name -> family, in the order `family_of` tries them.
FAMILIES: dict[str, Family] = {f.name: f for f in (T5, LM)}
# Hugging Face `model_type` -> family name.
HF_MODEL_TYPES: dict[str, str] = {t: f.name for f in FAMILIES.values()
                                  for t in f.hf_model_types}
assert len(HF_MODEL_TYPES) == sum(len(f.hf_model_types) for f in FAMILIES.values()), (
    "a Hugging Face model_type is claimed by two families")


def get_family(name: str) -> Family:
  """The family called `name`; ValueError naming the valid ones otherwise."""
  if not isinstance(name, str) or name not in FAMILIES:
    raise ValueError(f"unknown model family {name!r}; valid families: {sorted(FAMILIES)}.")
  return FAMILIES[name]


def family_for_hf_model_type(model_type: str | None) -> Family | None:
  """The family whose loader reads Hugging Face `model_type`, or None."""
  name = HF_MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None
  return None if name is None else FAMILIES[name]


def family_of(model: Any) -> Family | None:
  """The family of a model object (isinstance of a family's model class), or
  None for anything else (a wrapper, a toy model, an array). Imports nothing:
  a family whose model module is not loaded yet cannot have made `model`."""
  for family in FAMILIES.values():
    if family.model_module in sys.modules and isinstance(model, family.model_class):
      return family
  return None
