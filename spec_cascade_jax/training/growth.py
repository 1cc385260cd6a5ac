"""Function-preserving depth growth: a trained T5 becomes a deeper one.

    deeper = deepen(model, num_layers=3, num_decoder_layers=6)

New layers are interleaved with the old ones (old layer i is followed by its
copies), in the spirit of progressive stacking (Gong et al., 2019). Each
copy keeps the query/key/value and input projections of the layer it follows
but has its *output* projections (attention `out`, MLP `wo`) set to zero. In
a pre-norm residual block that makes the new layer the identity, so the
deeper model computes exactly the same function at the start and training
continues from the old loss rather than from scratch. The bundled verifier
recipe uses it (configs/train/demo_verifier.gin).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from spec_cascade_jax.models.t5.config import T5Config

# Parameters whose output feeds the residual stream: zero makes a block the identity.
_OUTPUT_PROJECTIONS = ("out", "wo")


def layer_map(old: int, new: int) -> list[tuple[int, bool]]:
  """For each new layer j: (source layer, is_copy). Copies follow their source."""
  if new < old:
    raise ValueError(f"Cannot grow {old} layers into {new}: growth only adds layers.")
  out, seen = [], set()
  for j in range(new):
    i = j * old // new
    out.append((i, i in seen))
    seen.add(i)
  return out


def _zero_outputs(tree: dict) -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out[k] = ({kk: np.zeros_like(vv) for kk, vv in v.items()}
                if k in _OUTPUT_PROJECTIONS else _zero_outputs(v))
    else:
      out[k] = v
  return out


def _grow_stack(stack: dict, old: int, new: int) -> dict:
  grown = {k: v for k, v in stack.items() if not k.startswith("layers_")}
  for j, (i, is_copy) in enumerate(layer_map(old, new)):
    layer = copy.deepcopy(stack[f"layers_{i}"])
    grown[f"layers_{j}"] = _zero_outputs(layer) if is_copy else layer
  return grown


def deepen(model: Any, num_layers: int | None = None,
           num_decoder_layers: int | None = None, name: str | None = None):
  """Returns `model` grown to the given encoder/decoder depths (same function)."""
  from spec_cascade_jax.models.t5 import T5Model
  import jax

  cfg: T5Config = model.config
  new_enc = cfg.num_layers if num_layers is None else num_layers
  new_dec = cfg.n_decoder_layers if num_decoder_layers is None else num_decoder_layers
  params = jax.tree_util.tree_map(np.asarray, model.params)
  params = dict(params)
  params["encoder"] = _grow_stack(params["encoder"], cfg.num_layers, new_enc)
  params["decoder"] = _grow_stack(params["decoder"], cfg.n_decoder_layers, new_dec)
  new_cfg = cfg.replace(num_layers=new_enc, num_decoder_layers=new_dec,
                        name=name or cfg.name)
  return T5Model(config=new_cfg, params=params)


def check_growable(source: T5Config, target: T5Config) -> None:
  """Raises unless `target` is `source` with at least as many layers."""
  keep = ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "feed_forward_proj",
          "tie_word_embeddings", "relative_attention_num_buckets",
          "relative_attention_max_distance")
  diff = [k for k in keep if getattr(source, k) != getattr(target, k)]
  if diff:
    raise ValueError(
        "Cannot grow the initial model into the configured one: they differ in "
        + ", ".join(f"{k} ({getattr(source, k)} vs {getattr(target, k)})" for k in diff)
        + ". Growth only adds layers; train the new shape from scratch instead.")
  if (target.num_layers < source.num_layers
      or target.n_decoder_layers < source.n_decoder_layers):
    raise ValueError(
        f"The configured model has fewer layers ({target.num_layers}+"
        f"{target.n_decoder_layers}) than the initial one ({source.num_layers}+"
        f"{source.n_decoder_layers}); growth only adds layers.")
