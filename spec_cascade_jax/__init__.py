"""spec_cascade_jax: speculative cascades in JAX/Flax.

    import spec_cascade_jax as scj
    res = scj.generate(drafter, verifier, input_ids, method="spec_cascade",
                       rule="token_v3", alpha=0.3, num_draft_tokens=5)

Importing the package is light: submodules (and TensorFlow, which only the
seqio tasks need) load on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY = {
    "generate": ("spec_cascade_jax.generation", "generate"),
    "calibrate": ("spec_cascade_jax.evaluation.calibration", "calibrate"),
    "GenerateResult": ("spec_cascade_jax.decoding.api", "GenerateResult"),
    "METHODS": ("spec_cascade_jax.decoding.api", "METHODS"),
    "RULES": ("spec_cascade_jax.decoding.api", "RULES"),
    "load_model": ("spec_cascade_jax.models.loading", "load_model"),
    "save_model": ("spec_cascade_jax.models.checkpoint", "save_model"),
    "T5Model": ("spec_cascade_jax.models.t5", "T5Model"),
    "T5Config": ("spec_cascade_jax.models.t5", "T5Config"),
    "LMModel": ("spec_cascade_jax.models.lm", "LMModel"),
    "LMConfig": ("spec_cascade_jax.models.lm", "LMConfig"),
    "load_vocabulary": ("spec_cascade_jax.data.vocab", "load_vocabulary"),
}
_SUBMODULES = ("testing", "models", "decoding", "data", "training", "evaluation", "tasks",
               "parallel")

__all__ = sorted(list(_LAZY) + list(_SUBMODULES))


def __getattr__(name: str):
  if name in _LAZY:
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
  if name in _SUBMODULES:
    value = importlib.import_module(f"spec_cascade_jax.{name}")
    globals()[name] = value
    return value
  raise AttributeError(f"module 'spec_cascade_jax' has no attribute {name!r}")


def __dir__():
  return __all__
