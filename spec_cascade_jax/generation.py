"""`spec_cascade_jax.generate`: the one call for local and sharded decoding.

    res = scj.generate(drafter, verifier, input_ids, method="spec_cascade")
    res = scj.generate(drafter, verifier, input_ids, method="spec_cascade",
                       mesh=parallel.make_mesh(num_partitions=2))

Without `mesh` this is `decoding.generate`; with one it is
`parallel.sharded_generate`. It lives above both packages (docs/design.md §5),
so that `decoding` never imports `parallel`: `parallel` builds on
`decoding`'s public pieces (`prepare`, `decode`, `GENERATE_DEFAULTS`).
"""

from __future__ import annotations

import inspect

from spec_cascade_jax.decoding import api
from spec_cascade_jax.decoding.errors import UsageError

_MESH_DOC = """
  mesh: a ("data", "model") jax.sharding.Mesh (`spec_cascade_jax.parallel.make_mesh`):
  decode sharded over it with `parallel.sharded_generate`; input_ids is then the
  global batch, and eos_id / input_lengths work as above. rules: logical axis
  rules (default `parallel.STANDARD_RULES`), with mesh= only, applied to each
  model separately: an axis a mesh axis does not divide for one model (a
  3-head drafter on a 2-way "model" axis) is replicated for that model only,
  with a `parallel.ReplicatedAxesWarning`. pad_single_row is a single-device
  setting and is ignored with mesh=.
"""


def generate(drafter, verifier, input_ids, *args, mesh=None, rules=None,
             **kwargs) -> api.GenerateResult:
  if mesh is None:
    if rules is not None:
      raise UsageError("rules= is used only with mesh=; pass a mesh "
                       "(spec_cascade_jax.parallel.make_mesh) or drop rules.")
    return api.generate(drafter, verifier, input_ids, *args, **kwargs)
  if args:
    raise TypeError("With mesh=, pass generate's arguments by keyword (method=..., "
                    f"rule=...); got {len(args)} positional argument(s) after input_ids.")
  # Imported here: `import spec_cascade_jax` stays light, and single-device
  # decoding never loads the sharding code.
  from spec_cascade_jax import parallel
  kwargs.pop("pad_single_row", None)
  return parallel.sharded_generate(
      drafter, verifier, input_ids, mesh=mesh,
      rules=parallel.STANDARD_RULES if rules is None else rules, **kwargs)


generate.__doc__ = api.generate.__doc__.split("\n\n", 2)[0] + "\n\n" + \
    api.generate.__doc__.split("\n\n", 2)[2].rstrip() + "\n" + _MESH_DOC
_SIGNATURE = inspect.signature(api.generate)
generate.__signature__ = _SIGNATURE.replace(parameters=[
    *_SIGNATURE.parameters.values(),
    inspect.Parameter("mesh", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("rules", inspect.Parameter.KEYWORD_ONLY, default=None)])
