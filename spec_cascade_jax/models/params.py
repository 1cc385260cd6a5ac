"""What every model family shares about parameters and configurations:
parameter trees with flat '/'-joined names (the form t5x and our own format
store), parameter counts, random init of a Flax module, and reading a config
dataclass back from its dict."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax
import jax
import numpy as np


def flatten_params(params: Mapping[str, Any]) -> dict[str, Any]:
  """Nested dict -> {'a/b/c': leaf}."""
  flat: dict[str, Any] = {}

  def walk(node, prefix):
    for k, v in node.items():
      path = f"{prefix}/{k}" if prefix else str(k)
      if isinstance(v, Mapping):
        walk(v, path)
      else:
        flat[path] = v

  walk(params, "")
  return flat


def unflatten_params(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b/c': leaf} -> nested dict."""
  tree: dict[str, Any] = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for k in parents:
      node = node.setdefault(k, {})
    node[leaf] = v
  return tree


def count_params(params) -> int:
  """Number of scalars in a parameter tree (works on `jax.eval_shape` output)."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def init_params(module, ids: jax.Array, rng: jax.Array, jit: bool = True) -> dict[str, Any]:
  """`module.init(rng, ids, ids)["params"]` as a plain nested dict. jit=True
  compiles the init as one program (the values a recipe reproduces bit for
  bit); jit=False runs it eagerly. The tree is rebuilt so its dict keys are
  sorted either way (an eager init keeps the modules' creation order)."""
  init = lambda r: module.init(r, ids, ids)  # noqa: E731
  variables = (jax.jit(init) if jit else init)(rng)
  return jax.tree.map(lambda x: x, flax.core.unfreeze(variables["params"]))


def config_from_dict(cls, d: Mapping[str, Any]):
  """`cls(**d)` for a config dataclass, naming unknown fields (a file written
  by another version, or a typo) instead of failing inside the constructor."""
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - names)
  if unknown:
    raise ValueError(f"Unknown {cls.__name__} fields {unknown}; known: {sorted(names)}.")
  return cls(**d)
