"""`sharded_generate`: `scj.generate` on a ("data", "model") mesh, one jit.

The decode function is the very one `decoding.api.generate` compiles
(`api.decode`: the same kernel, baselines and targets); here it is jitted
with explicit `in_shardings` / `out_shardings`:

  drafter, verifier params   by the logical axis rules (heads/mlp/vocab over "model"),
                             resolved per model: an axis the mesh does not divide is
                             replicated for that model only (partitioning.model_rules)
  input_ids [B, S]           P("data", None)
  alpha/temperature/top_p [B] P("data");  input_lengths [B] (LMs) P("data")
  rng                        replicated
  tokens [B, N], stats [B]   P("data", ...)

and the models are wrapped in `ShardedModel`, which pins every K/V cache that
`init_cache` / `step` return to P("data", "model", None, None) (an LM's
grouped-query cache: P("data", None, None, None) where its K/V heads are
replicated, parallel/lm_axes.py; a T5 whose heads do not divide "model", e.g. a
3-head drafter on a 2-way axis: P("data", None, None, None)). The whole
speculative while_loop is one XLA program: GSPMD partitions it, no host round
trip happens inside the loop, and the only collectives are the ones the math
needs (the all-reduces after row-parallel matmuls, the vocab reductions of
sampling).

Multi-host: every process runs the same script with the same arguments.
`input_ids` may be the global batch as a host array (identical on every
process; each process places only its own rows), or a global `jax.Array`
(e.g. from `global_batch`, which assembles per-host batches). The result is
gathered to every process as numpy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from spec_cascade_jax.decoding import api
from spec_cascade_jax.parallel import partitioning as pt

# (treedefs, shardings, statics) -> jitted function; a new jax.jit object per
# call would retrace every time.
_JIT_CACHE: dict = {}


def global_batch(local_input_ids, mesh: Mesh) -> jax.Array:
  """This process's rows [B_local, S] -> the global [B_local * processes, S] array.

  For multi-host input pipelines where each host reads its own slice of the
  data (process i holds rows i*B_local .. (i+1)*B_local - 1, in process order).
  """
  local = np.asarray(local_input_ids, np.int32)
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P(pt.DATA, None)), local)


def _to_numpy(x) -> np.ndarray:
  """A (possibly multi-host) array -> the full value on every process."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def _jitted(drafter, verifier, params, mesh: Mesh, statics: dict):
  """The jit of api's decode function with explicit in/out shardings (cached)."""
  model_sh = [None if m is None else pt.model_in_shardings(m) for m in (drafter, verifier)]
  rows = NamedSharding(mesh, P(pt.DATA))
  # The last one, input_lengths [B] or None (no leaves: the sharding then covers nothing).
  in_shardings = (*model_sh, NamedSharding(mesh, P(pt.DATA, None)),
                  jax.tree.map(lambda _: rows, params),   # each [B] or [B, 3]
                  NamedSharding(mesh, P()), rows)
  out_shardings = (NamedSharding(mesh, P(pt.DATA, None)), rows)  # stats: prefix tree
  key = (jax.tree.structure(drafter), jax.tree.structure(verifier), jax.tree.structure(params),
         tuple(jax.tree.leaves(model_sh)), mesh, tuple(sorted(statics.items())))
  if key not in _JIT_CACHE:
    # api.decode is the function `scj.generate` jits: the same dispatch over
    # methods, compiled here with shardings. The statics are bound first (jit
    # takes no kwargs alongside in_shardings); the cache key holds them, so
    # each setting compiles once.
    fn = functools.partial(api.decode, **statics)
    _JIT_CACHE[key] = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings)
  return _JIT_CACHE[key]


def lower_sharded_generate(drafter, verifier, input_ids, *, mesh: Mesh,
                           rules: pt.Rules = pt.STANDARD_RULES, **generate_kwargs):
  """(jax.stages.Lowered, placed args): to inspect the sharded HLO
  (`.compile().as_text()`) or cost without running it."""
  fn, args, statics = _setup(drafter, verifier, input_ids, mesh, rules, generate_kwargs)
  return fn.lower(*args), args


# generate()'s keyword arguments and defaults (rule / alpha None: the
# method's default; a method that takes no rule or α rejects one passed
# explicitly, as `scj.generate` does). pad_single_row is a one-device setting.
_KWARGS = {k: v for k, v in api.GENERATE_DEFAULTS.items() if k != "pad_single_row"}


def _setup(drafter, verifier, input_ids, mesh, rules, generate_kwargs):
  unknown = sorted(set(generate_kwargs) - set(_KWARGS))
  if unknown:
    raise TypeError(f"Unknown generate arguments {unknown}; valid: {sorted(_KWARGS)}.")
  mesh, rules = pt._check_mesh(mesh), pt._check_rules(rules)
  kw = {**_KWARGS, **generate_kwargs}
  drafter, verifier, params, rng, statics = api.prepare(
      drafter, verifier, input_ids, **kw)
  lengths = kw["input_lengths"]
  batch, data = int(input_ids.shape[0]), mesh.shape[pt.DATA]
  batch_axis = pt.logical_to_spec(("batch",), rules)[0]
  if batch_axis != pt.DATA:
    raise ValueError(f"logical_axis_rules must map 'batch' to {pt.DATA!r} (got "
                     f"{batch_axis!r}): decoding shards rows over the data axis.")
  if batch % data:
    raise ValueError(f"The global batch ({batch} rows) is not divisible by the 'data' mesh"
                     f" axis ({data}); pad the batch with all-pad rows (input_ids 0) to a"
                     f" multiple of {data}.")
  drafter, verifier = [None if m is None else pt.shard_model(m, mesh, rules)
                       for m in (drafter, verifier)]
  rows = NamedSharding(mesh, P(pt.DATA))
  if isinstance(input_ids, jax.Array):
    input_ids = input_ids.astype(jnp.int32)
  else:
    input_ids = np.asarray(input_ids, np.int32)
  input_ids = pt.place(input_ids, NamedSharding(mesh, P(pt.DATA, None)))
  params = jax.tree.map(lambda a: pt.place(a, rows), params)
  rng = pt.place(rng, NamedSharding(mesh, P()))
  if lengths is not None:
    lengths = pt.place(lengths.astype(jnp.int32) if isinstance(lengths, jax.Array)
                       else np.asarray(lengths, np.int32), rows)
  fn = _jitted(drafter, verifier, params, mesh, statics)
  return fn, (drafter, verifier, input_ids, params, rng, lengths), statics


def sharded_generate(drafter, verifier, input_ids, *, mesh: Mesh,
                     rules: pt.Rules = pt.STANDARD_RULES,
                     **generate_kwargs) -> api.GenerateResult:
  """`scj.generate` sharded over `mesh` (see the module docstring).

  Args:
    drafter, verifier: T5Model / ShardedModel / any protocol model (its
      parameters then replicated), or None where the method does not use it.
    input_ids: [B, S] int, the GLOBAL batch; B divisible by the "data" axis.
    mesh: a ("data", "model") Mesh (`parallel.make_mesh`).
    rules: logical axis rules (`partitioning.STANDARD_RULES`), one set for both
      models, resolved for each: a logical axis whose mesh axis does not divide
      it in one model (e.g. a 3-head drafter's heads on a 2-way "model" axis)
      is replicated for that model only, with a one-time
      `partitioning.ReplicatedAxesWarning`; the other model keeps its sharding.
    **generate_kwargs: method, rule, alpha, num_draft_tokens, temperature,
      top_k, top_p, max_new_tokens, rng, seq_confidence, ngram_size, eos_id,
      input_lengths ([B], split over "data" like the rows), as `scj.generate`.
  Returns:
    GenerateResult with numpy tokens [B, max_new_tokens] and stats [B], the
    full global batch on every process. Same tokens and stats as
    `scj.generate` (greedy: exactly; sampling: the same per-row uniforms).
  """
  fn, args, statics = _setup(drafter, verifier, input_ids, mesh, rules, generate_kwargs)
  tokens, stats = fn(*args)
  return api.GenerateResult(tokens=_to_numpy(tokens).astype(np.int32),
                            stats={k: _to_numpy(v).astype(np.int32)
                                   for k, v in stats.items()})
