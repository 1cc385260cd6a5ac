"""Parameter trees, the same for every model family: flat '/'-joined names
(the form t5x and our own format store) and parameter counts."""

from __future__ import annotations

from typing import Any, Mapping

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
