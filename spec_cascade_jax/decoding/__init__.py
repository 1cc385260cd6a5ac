"""Decoding: targets and rules, sampling, the speculative kernel, baselines, `generate`.

The names below load on first use, so `decoding.methods` (the table of
methods and rules, pure Python) imports without jax.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "generate": "spec_cascade_jax.decoding.api",
    "GenerateResult": "spec_cascade_jax.decoding.api",
    "METHODS": "spec_cascade_jax.decoding.api",
    "ALPHA_RANGES": "spec_cascade_jax.decoding.methods",
    "RULES": "spec_cascade_jax.decoding.methods",
    "UsageError": "spec_cascade_jax.decoding.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
