"""Partitioning in the t5x spirit: a ("data", "model") mesh, logical axis names
on every parameter and cache dimension, and rules mapping logical to mesh axes.

Nothing here is a distribution layer of its own: arrays are `jax.Array`s with
`NamedSharding`s, the decode loop is one `jax.jit` with explicit in/out
shardings, and XLA's SPMD partitioner (GSPMD) inserts the collectives.

Logical axes (t5x names, `t5x/partitioning.py::standard_logical_axis_rules`):

  batch           rows of input_ids / caches              -> "data"
  vocab           embedding rows, output logits columns   -> "model"
  mlp             d_ff                                    -> "model"
  heads           attention heads (relpos table, caches)  -> "model"
  joined_kv       heads * d_kv of the 2-D q/k/v/o kernels -> "model"
  kv_heads        key/value heads of grouped-query LMs    -> "model" (lm_axes.py)
  embed, kv, length, relpos_buckets                       -> replicated

A rule list is an ordered sequence of (logical, mesh axis or None); the first
rule whose mesh axis is not yet used by another dimension of the same array
wins (flax `logical_to_mesh_axes` semantics), so one mesh axis never shards two
dimensions of one array.

T5 parameters (t5x names, all kernels 2-D):
  token_embedder/embedding [V, D]         (vocab, embed)
  */attention/{query,key,value}/kernel    (embed, joined_kv)
  */attention/out/kernel                  (joined_kv, embed)
  */mlp/{wi,wi_0,wi_1}/kernel [D, F]      (embed, mlp);  mlp/wo (mlp, embed)
  */relpos_bias/rel_embedding [H, buckets](heads, relpos_buckets)
  */*_norm/scale [D]                      (embed,)
  decoder/logits_dense/kernel [D, V]      (embed, vocab)
T5 cache (models/t5/model.py):
  self_attention/*/{key,value} [B, H, L, Dkv]  (batch, heads, length, kv)
  cross_attention/*/{key,value} [B, H, S, Dkv] (batch, heads, length, kv)
  encoder_mask [B, S]                          (batch, length)
Sharding joined_kv = heads * d_kv over "model" puts whole heads on each device
(when num_heads % model == 0), so the [B, T, H, Dkv] reshape inside
attention keeps the head split that the caches carry, and no cache is ever
gathered.

Uneven axes are replicated per model (`model_rules`), never an error: the
rules are resolved for each model on its own, and a logical axis whose size
the mesh axis it maps to does not divide is replicated for THAT model only.
"heads" and "joined_kv" go together (by num_heads: a 3-head drafter on a
2-way "model" axis keeps all heads on every device, its caches split by batch
only, while a 4-head verifier in the same call stays split); any other axis
(vocab, mlp, ...) by the parameter dimensions it names. Each such model is
reported once per process with a `ReplicatedAxesWarning` naming the model,
the axes and the mesh size that would split them; `replicated_axes` returns
them. The batch is not a model property: it must divide by "data" (pad it).

Decoder-only LMs (models/lm/model.py): their table, and why grouped-query K/V
heads are replicated when num_kv_heads does not divide by "model", is in
lm_axes.py.

One dispatch serves every family (`_family`): the registry
(models/families.py) names a model's family, whose sharding table here
(SHARDED_FAMILIES) gives its parameter axes, cache axes and head counts;
`param_shardings`, `shard_model` and `ShardedModel`'s cache shardings look the
family up there and nowhere else. Any other model (e.g. testing.BigramModel) is replicated, its cache
split by batch only.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from typing import Any, Callable, Mapping, Sequence

import flax.struct
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from spec_cascade_jax.decoding import loop
from spec_cascade_jax.models import families
from spec_cascade_jax.parallel import lm_axes

DATA, MODEL = "data", "model"
MESH_AXES = (DATA, MODEL)

Rules = tuple[tuple[str, str | None], ...]

# t5x's standard rules, restricted to the axes used here (kv_heads: lm_axes.py).
STANDARD_RULES: Rules = (
    ("batch", DATA),
    ("vocab", MODEL),
    ("mlp", MODEL),
    ("heads", MODEL),
    ("joined_kv", MODEL),
    ("kv_heads", MODEL),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
)
# Pure data parallelism: every parameter replicated, the batch split.
DATA_PARALLEL_RULES: Rules = tuple((name, DATA if name == "batch" else None)
                                   for name, _ in STANDARD_RULES)


def standard_logical_axis_rules() -> Rules:
  """The default rules (a function, so gin can bind `@standard_logical_axis_rules()`)."""
  return STANDARD_RULES


def data_parallel_logical_axis_rules() -> Rules:
  return DATA_PARALLEL_RULES


def _check_rules(rules) -> Rules:
  try:
    rules = tuple((str(a), None if m is None else str(m)) for a, m in rules)
  except (TypeError, ValueError) as e:
    raise ValueError(f"logical_axis_rules must be a sequence of (logical_name, mesh_axis or"
                     f" None) pairs, got {rules!r}.") from e
  bad = [m for _, m in rules if m is not None and m not in MESH_AXES]
  if bad:
    raise ValueError(f"logical_axis_rules map to unknown mesh axis {bad[0]!r}; the mesh axes"
                     f" are {MESH_AXES} (or None for replicated).")
  return rules


# ----------------------------------------------------------------------------
# Mesh
# ----------------------------------------------------------------------------


def make_mesh(num_partitions: int = 1, devices: Sequence[jax.Device] | None = None,
              mesh_shape: tuple[int, int] | None = None) -> Mesh:
  """A ("data", "model") mesh over `devices` (default: all devices of all hosts).

  num_partitions: size of "model" (t5x's `PjitPartitioner(num_partitions=)`);
  "data" takes the rest. Or give `mesh_shape=(data, model)` explicitly. The
  model axis is the fastest-varying one, so with jax.devices()' process-major
  order a model group stays inside one host whenever num_partitions divides
  the local device count, and only the data axis crosses hosts.
  Axis types are Auto: XLA propagates shardings from inputs and constraints.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if mesh_shape is None:
    if not isinstance(num_partitions, (int, np.integer)) or num_partitions < 1:
      raise ValueError(f"num_partitions must be an int >= 1, got {num_partitions!r}.")
    if n % num_partitions:
      raise ValueError(f"num_partitions={num_partitions} does not divide the {n} devices;"
                       " pick a divisor of the device count.")
    mesh_shape = (n // num_partitions, int(num_partitions))
  mesh_shape = tuple(int(s) for s in mesh_shape)
  if len(mesh_shape) != 2 or math.prod(mesh_shape) != n:
    raise ValueError(f"mesh_shape={mesh_shape} must be (data, model) with data * model ="
                     f" {n}, the number of devices.")
  return jax.make_mesh(mesh_shape, MESH_AXES, axis_types=(AxisType.Auto,) * 2,
                       devices=devices)


def _check_mesh(mesh: Mesh) -> Mesh:
  if not isinstance(mesh, Mesh) or tuple(mesh.axis_names) != MESH_AXES:
    raise ValueError(f"Expected a jax.sharding.Mesh with axes {MESH_AXES} (build one with"
                     f" parallel.make_mesh), got {mesh!r}.")
  return mesh


# ----------------------------------------------------------------------------
# Logical axes
# ----------------------------------------------------------------------------

_ATTN = r"(attention|self_attention|encoder_decoder_attention)"
_PARAM_AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"^token_embedder/embedding$", ("vocab", "embed")),
    (rf"/{_ATTN}/(query|key|value)/kernel$", ("embed", "joined_kv")),
    (rf"/{_ATTN}/out/kernel$", ("joined_kv", "embed")),
    (r"/mlp/wi(_0|_1)?/kernel$", ("embed", "mlp")),
    (r"/mlp/wo/kernel$", ("mlp", "embed")),
    (r"/relpos_bias/rel_embedding$", ("heads", "relpos_buckets")),
    (r"/scale$", ("embed",)),
    (r"^decoder/logits_dense/kernel$", ("embed", "vocab")),
)
_CACHE_AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"^(self_attention|cross_attention)/layers_\d+/(key|value)$",
     ("batch", "heads", "length", "kv")),
    (r"^encoder_mask$", ("batch", "length")),
)


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                  for k in path)


def _tree_axes(tree, patterns, what: str, family: str):
  """Same tree as `tree`, each leaf replaced by the axes of its first matching pattern."""

  def one(path, x):
    name = _path_str(path)
    for pattern, axes in patterns:
      if re.search(pattern, name):
        return axes
    raise ValueError(f"No logical axes known for {what} {name!r}: it is not a {family}"
                     " tree (parallel/partitioning.py and lm_axes.py list the names).")

  return jax.tree_util.tree_map_with_path(one, tree)


def t5_param_logical_axes(params: Mapping[str, Any]):
  """Same tree as `params` (arrays or ShapeDtypeStructs), leaves = tuples of names."""
  return _tree_axes(params, _PARAM_AXES, "parameter", "T5 (t5x-named)")


def t5_cache_logical_axes(cache: Mapping[str, Any]):
  """Logical axes of a T5 cache tree (see the module docstring)."""
  return _tree_axes(cache, _CACHE_AXES, "cache entry", "T5 (t5x-named)")


def lm_param_logical_axes(params: Mapping[str, Any]):
  """Logical axes of an LMModel's parameters (table: lm_axes.py)."""
  return _tree_axes(params, lm_axes.PARAM_AXES, "parameter", "decoder-only LM")


def lm_cache_logical_axes(cache: Mapping[str, Any]):
  """Logical axes of an LMModel cache (LMModel.init_cache; table: lm_axes.py)."""
  return _tree_axes(cache, lm_axes.CACHE_AXES, "cache entry", "decoder-only LM")


def batch_logical_axes(tree):
  """Any other model (e.g. testing.BigramModel): batch leading, rest replicated."""
  return jax.tree.map(lambda x: ("batch",) + (None,) * (np.ndim(x) - 1), tree)


def logical_to_spec(logical_axes: Sequence[str | None], rules: Rules) -> P:
  """("batch", "heads", "length", "kv") -> P("data", "model", None, None)."""
  used, out = set(), []
  for name in logical_axes:
    mesh_axis = None
    if name is not None:
      for logical, m in rules:
        if logical == name and (m is None or m not in used):
          mesh_axis = m
          break
    if mesh_axis is not None:
      used.add(mesh_axis)
    out.append(mesh_axis)
  return P(*out)


def _spec_tree(shapes, axes, mesh: Mesh, rules: Rules, what: str):
  """PartitionSpecs for a tree, checking every sharded dim divides evenly."""

  def one(path, x, names):
    if len(names) != np.ndim(x):
      raise ValueError(f"{what} {_path_str(path)!r}: {len(names)} logical axes {names} for"
                       f" a rank-{np.ndim(x)} array of shape {np.shape(x)}.")
    spec = logical_to_spec(names, rules)
    for dim, name, m in zip(np.shape(x), names, spec):
      if m is not None and dim % mesh.shape[m]:
        fix = (f"pad the batch with all-pad rows to a multiple of {mesh.shape[m]}"
               if name == "batch" else f"use a mesh whose {m!r} size divides {dim}, or map"
               f" {name!r} to None in logical_axis_rules")
        raise ValueError(
            f"{what} {_path_str(path)!r} of shape {np.shape(x)}: its {name!r} dimension"
            f" ({dim}) is not divisible by the {m!r} mesh axis ({mesh.shape[m]}); {fix}.")
    return spec

  # `axes` has tuples where `shapes` has leaves: tree_map flattens it up to them.
  return jax.tree_util.tree_map_with_path(one, shapes, axes)


# ----------------------------------------------------------------------------
# Sharded models
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Family:
  """How one model family is sharded (the one place that knows the families).

  heads(config) -> (split, replicate_if_uneven), each {logical name: (config
  field, head count)}: a name whose mesh axis does not divide its count is
  replicated for that model (`model_rules`), a `split` one with a
  ReplicatedAxesWarning (the family means to split it), a
  `replicate_if_uneven` one silently (replicating it is the family's design).
  """
  param_axes: Callable
  cache_axes: Callable
  heads: Callable


_T5_FAMILY = _Family(
    t5_param_logical_axes, t5_cache_logical_axes,
    lambda c: ({"heads": ("num_heads", c.num_heads),
                "joined_kv": ("num_heads", c.num_heads)}, {}))
_LM_FAMILY = _Family(lm_param_logical_axes, lm_cache_logical_axes, lm_axes.head_counts)
# Sharding table of each family of the registry (models/families.py), by name.
SHARDED_FAMILIES = {"t5": _T5_FAMILY, "lm": _LM_FAMILY}


def _family(x) -> _Family | None:
  """The sharding table of a model object's family (models/families.py:
  T5Model, LMModel), or None for anything else."""
  family = families.family_of(x)
  if family is None:
    return None
  if family.name not in SHARDED_FAMILIES:
    raise NotImplementedError(
        f"model family {family.name!r} has no sharding table; add one to"
        " parallel/partitioning.py (SHARDED_FAMILIES).")
  return SHARDED_FAMILIES[family.name]


def _is_family_model(x) -> bool:
  return _family(x) is not None


class ReplicatedAxesWarning(UserWarning):
  """A model's logical axes are replicated because the mesh axis they map to
  does not divide them (`model_rules`); issued once per model and mesh shape."""


# (config, mesh sizes, rules) already reported by a ReplicatedAxesWarning.
_WARNED: set = set()


def _model_replication(model, sizes: Mapping[str, int], rules: Rules):
  """(loud, quiet): the logical axes `model_rules` replicates for one family
  model, each {name: (why, the mesh size that would split it)}; `quiet` are
  those its family replicates by design (an LM's grouped-query K/V heads),
  `loud` the ones a ReplicatedAxesWarning reports."""
  fam = _family(model)
  loud: dict[str, tuple[str, str]] = {}
  quiet: dict[str, tuple[str, str]] = {}
  split, uneven = fam.heads(model.config)
  for counts, out in ((split, loud), (uneven, quiet)):
    for name, (field, count) in counts.items():
      m = logical_to_spec((name,), rules)[0]
      if m is not None and count % sizes[m]:
        out[name] = (f"{field}={count} is not divisible by the {m!r} mesh axis ({sizes[m]})",
                     f"{m!r} size divides {count}")
  # Any other axis, by the parameter dimensions it names. Replicating one
  # name can hand its mesh axis to another dimension of the same array
  # (first free rule wins), so repeat until nothing changes.
  leaves = jax.tree_util.tree_leaves_with_path(model.params)
  axes = jax.tree.leaves(fam.param_axes(model.params), is_leaf=lambda x: isinstance(x, tuple))
  named = [(_path_str(path), np.shape(x), names) for (path, x), names in zip(leaves, axes)]
  while True:
    resolved = tuple((n, None) for n in (*quiet, *loud)) + tuple(rules)
    found = {}
    for path, shape, names in named:
      for dim, name, m in zip(shape, names, logical_to_spec(names, resolved)):
        if m is not None and dim % sizes[m] and name not in found:
          found[name] = (f"{path!r} has {name!r} size {dim}, not divisible by the {m!r}"
                         f" mesh axis ({sizes[m]})", f"{m!r} size divides {dim}")
    if not found:
      return loud, quiet
    loud.update(found)


def replicated_axes(model, mesh: Mesh | Mapping[str, int],
                    rules: Rules = STANDARD_RULES) -> tuple[str, ...]:
  """The logical axes `model_rules` replicates for `model` on `mesh` because
  their mesh axis does not divide them (e.g. ("heads", "joined_kv") for a
  3-head T5 on a 2-way "model" axis); () when the model shards as the rules
  say, or is not a family model."""
  if _family(model) is None:
    return ()
  loud, quiet = _model_replication(model, dict(getattr(mesh, "shape", mesh)),
                                   _check_rules(rules))
  return (*quiet, *loud)


def model_rules(model, mesh: Mesh | Mapping[str, int], rules: Rules = STANDARD_RULES) -> Rules:
  """The rules as applied to one family model (T5Model, LMModel) on `mesh`.

  Every logical axis that its mesh axis does not divide for THIS model is
  replicated for it: (name, None) goes first, the other models of a call keep
  the rules as given. Query heads ("heads" and "joined_kv", by num_heads) and
  any parameter dimension (vocab, mlp, ...) that would split unevenly are
  reported with a one-time `ReplicatedAxesWarning` (per model configuration,
  mesh shape and rules) naming the mesh size that would split them; an LM's
  K/V heads ("kv_heads") are replicated silently, by design (lm_axes.py).
  `mesh` may be a Mesh or its {axis name: size} shape.
  """
  if _family(model) is None:
    return rules
  sizes = dict(getattr(mesh, "shape", mesh))
  loud, quiet = _model_replication(model, sizes, rules)
  if loud:
    key = (model.config, tuple(sorted(sizes.items())), tuple(rules))
    if key not in _WARNED:
      _WARNED.add(key)
      name = getattr(model.config, "name", None) or type(model).__name__
      axes = ", ".join(repr(n) for n in loud)
      why = "; ".join(dict.fromkeys(w for w, _ in loud.values()))
      fix = " and ".join(dict.fromkeys(f for _, f in loud.values()))
      warnings.warn(
          f"{name}: {why}, so its logical axes {axes} are replicated for this model (every"
          f" device holds them whole) while other models keep their sharding. To split"
          f" them, use a mesh whose {fix}.", ReplicatedAxesWarning, stacklevel=3)
  return tuple((n, None) for n in (*quiet, *loud)) + tuple(rules)


def _cache_axes(model, cache, mesh: Mesh, rules: Rules):
  """(axes, rules) of a cache tree: by the family of the first family model in
  `model` (itself or one a wrapper holds) whose cache names match; any other
  cache: batch leading, the rest replicated."""
  for x in jax.tree.leaves(model, is_leaf=_is_family_model):
    fam = _family(x)
    if fam is None:
      continue
    try:
      axes = fam.cache_axes(cache)
    except ValueError:
      continue
    return axes, model_rules(x, mesh, rules)
  return batch_logical_axes(cache), rules


@flax.struct.dataclass
class ShardedModel:
  """A decoder model (models/protocol.py) whose parameters and caches are sharded.

  The decoding kernel only calls `init_cache` and `step`; this wrapper pins
  every cache they return to its NamedSharding with
  `jax.lax.with_sharding_constraint`, so inside the jitted while_loop XLA keeps
  the K/V caches split over ("data", "model") instead of choosing a layout of
  its own (a gathered cache would cost a full-cache all-gather per step).
  `model`'s parameters are leaves (sharded jax.Arrays); mesh and rules are
  static, so a jitted decode compiles once per (configuration, mesh, rules).
  """
  model: Any
  mesh: Mesh = flax.struct.field(pytree_node=False)
  rules: Rules = flax.struct.field(pytree_node=False, default=STANDARD_RULES)

  @property
  def vocab_size(self) -> int:
    return self.model.vocab_size

  @property
  def eos_id(self):
    """The wrapped model's EOS ids (models/protocol.py; 1 where it has none)."""
    return getattr(self.model, "eos_id", loop.EOS)

  @property
  def decoder_only(self) -> bool:
    """The wrapped model's `decoder_only` (models/protocol.py)."""
    return bool(getattr(self.model, "decoder_only", False))

  def cache_shardings(self, cache):
    """NamedShardings of a cache tree (arrays or ShapeDtypeStructs)."""
    axes, rules = _cache_axes(self.model, cache, self.mesh, self.rules)
    specs = _spec_tree(cache, axes, self.mesh, rules, "cache")
    return jax.tree.map(lambda s: NamedSharding(self.mesh, s), specs,
                        is_leaf=lambda x: isinstance(x, P))

  def constrain_cache(self, cache):
    return jax.lax.with_sharding_constraint(cache, self.cache_shardings(cache))

  def init_cache(self, input_ids: jax.Array, max_length: int, input_lengths=None):
    """As the wrapped model's; input_ids [B, S] (input_lengths [B], passed on only
    when given, as decoding.loop.init_cache does) -> cache pinned to its sharding."""
    cache = loop.init_cache(self.model, input_ids, max_length, input_lengths)
    return self.constrain_cache(cache)

  def step(self, tokens: jax.Array, cache, positions: jax.Array):
    """tokens [B, k], positions [B] -> (logits [B, k, V] f32, cache pinned)."""
    logits, cache = self.model.step(tokens, cache, positions)
    return logits, self.constrain_cache(cache)

  def logits(self, input_ids: jax.Array, *args, **kwargs) -> jax.Array:
    """The wrapped model's teacher-forced logits (T5: [B, T, V] from input_ids and
    decoder_input_ids; an LM also its causal forward and input_lengths), sharded."""
    return self.model.logits(input_ids, *args, **kwargs)


def param_shardings(model, mesh: Mesh, rules: Rules = STANDARD_RULES):
  """NamedShardings for every leaf of `model`, as a tree shaped like `model`.

  Every family model inside `model` (T5Model, LMModel: the model itself, or
  one that a wrapper such as a logit-masking model holds) is sharded by its
  family's parameter axes and `model_rules`; any other leaf is replicated.
  Works on `jax.eval_shape` output, so real sizes can be planned without
  allocating them.
  """
  mesh, rules = _check_mesh(mesh), _check_rules(rules)

  def one(x):
    fam = _family(x)
    if fam is None:
      return NamedSharding(mesh, P())
    specs = _spec_tree(x.params, fam.param_axes(x.params), mesh,
                       model_rules(x, mesh, rules), "parameter")
    return x.replace(params=jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                                         is_leaf=lambda y: isinstance(y, P)))

  return jax.tree.map(one, model, is_leaf=_is_family_model)


def place(x, sharding: NamedSharding) -> jax.Array:
  """Puts one host or device array onto `sharding`, on every host.

  An array that already has this sharding is returned as is. Otherwise each
  device's block is cut from a host copy with `make_array_from_callback`,
  which works when the devices span several processes (each process builds
  its own shards; every process must pass the same value).
  """
  if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
    return x
  if isinstance(x, jax.Array) and x.is_fully_addressable:
    if sharding.is_fully_addressable:
      return jax.device_put(x, sharding)
    x = np.asarray(x)
  elif isinstance(x, jax.Array):
    raise ValueError(f"Cannot reshard a multi-host array from {x.sharding} to {sharding} "
                     "here; create it with the target sharding.")
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_model(model, mesh: Mesh, rules: Rules = STANDARD_RULES) -> ShardedModel:
  """Places `model`'s parameters by the rules and wraps it in a ShardedModel.

  A ShardedModel on the same mesh and rules is returned unchanged; one on
  another mesh is re-placed.
  """
  mesh, rules = _check_mesh(mesh), _check_rules(rules)
  if isinstance(model, ShardedModel):
    if model.mesh == mesh and model.rules == rules:
      return model
    model = model.model
  placed = jax.tree.map(place, model, param_shardings(model, mesh, rules))
  return ShardedModel(model=placed, mesh=mesh, rules=rules)


def model_in_shardings(model: ShardedModel):
  """A prefix tree of NamedShardings for `model` as a jit argument."""
  return ShardedModel(model=param_shardings(model.model, model.mesh, model.rules),
                      mesh=model.mesh, rules=model.rules)


# ----------------------------------------------------------------------------
# Partitioner (the gin-configurable object)
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Partitioner:
  """t5x's `PjitPartitioner(num_partitions=..., logical_axis_rules=...)`, for decoding.

  num_partitions: size of the "model" axis; the "data" axis takes the
  remaining devices. mesh_shape: (data, model), overrides num_partitions.
  logical_axis_rules: see the module docstring; default STANDARD_RULES.

      partitioner = Partitioner(num_partitions=2)
      res = scj.generate(drafter, verifier, input_ids, method="speculative",
                         mesh=partitioner.mesh, rules=partitioner.logical_axis_rules)

  Like t5x's partitioner it holds the mesh and the rules and decodes nothing
  itself: `scj.generate(mesh=)` (parallel/generate.py) does, on top of this
  module.
  """
  num_partitions: int = 1
  logical_axis_rules: Rules = STANDARD_RULES
  mesh_shape: tuple[int, int] | None = None

  def __post_init__(self):
    object.__setattr__(self, "logical_axis_rules", _check_rules(self.logical_axis_rules))

  @property
  def mesh(self) -> Mesh:
    # Built on use (not at gin-parse time), after jax.distributed.initialize.
    return make_mesh(self.num_partitions, mesh_shape=self.mesh_shape)

  def shard_model(self, model, mesh: Mesh | None = None) -> ShardedModel:
    return shard_model(model, mesh or self.mesh, self.logical_axis_rules)
