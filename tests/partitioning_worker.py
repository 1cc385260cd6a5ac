"""The T5 checks of the shared 8-device worker (tests/mesh_worker.py) and
the two-process check of tests/test_partitioning.py.

    python tests/mesh_worker.py OUT_DIR t5          # run_mesh, with 8 fake devices
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python tests/partitioning_worker.py multiprocess OUT_DIR PORT PROCESS_ID

Each mode runs several checks in one process (compiles dominate the cost) and
writes what it found to OUT_DIR as .npz/.json for the parent to assert on; any
failed check raises. run_mesh's decodes, each against the unsharded one:

  tiny pair (4 heads)  speculative on (8, 1) and (2, 4); spec_cascade (also
                       the compiled loop's HLO) and prompt_lookup on (2, 4)
  bundled pair         demo-drafter (3 heads, replicated on a 2-way "model"
                       axis) -> demo-verifier (4 heads, split): speculative
                       and spec_cascade on (4, 2), 2 heads per device

so every method runs model-parallel, (8, 1) covers one row per device, and
(4, 2) both several heads per device and a pair whose models shard
differently.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import numpy as np

MAX_NEW = 10
GAMMA = 3
# One speculative method, one speculative cascade (a rule needing both models)
# and prompt lookup (the verifier alone, its own while loops).
METHODS = (dict(method="speculative"),
           dict(method="spec_cascade", rule="token_v3", alpha=0.3),
           dict(method="prompt_lookup", ngram_size=1))
# The tiny pair's meshes per method (module docstring); spec_cascade on
# (2, 4) is also the program whose HLO is checked.
MESHES = {"speculative": ((8, 1), (2, 4)), "spec_cascade": ((2, 4),),
          "prompt_lookup": ((2, 4),)}
# The bundled pair on a (4, 2) mesh: 8 short messages of its task (English
# UI strings) on which the drafter's drafts are partly rejected and the
# cascade defers some tokens.
PAIR = ("demo-drafter", "demo-verifier", "gettext")
PAIR_MESH = (4, 2)
PAIR_MAX_NEW = 16
PAIR_TEXTS = ("!! Insufficient Fuel Consumption",
              "!Invalid find condition - change it and try again",
              '"%s" Already Exists - Continue With Join?',
              '"Come back when you are ready."',
              '"Enter" key finishes the transaction',
              "\"I'm going to make him an offer he can't refuse.\"",
              '"Take his gun, we\'re going to need it."',
              '"Who do you take us for, the Empire?"')


def tiny_pair():
  """(drafter, verifier): tiny T5 1.1 (heads 4, d_ff 64, vocab 64, untied head).

  T5 1.1's untied random output layer makes greedy outputs vary from token to
  token (a random tied T5 1.0 tends to copy one token forever); the drafter is
  the verifier plus noise, so drafts are sometimes accepted, sometimes not.
  """
  import jax
  import jax.numpy as jnp
  from spec_cascade_jax.models.t5 import PRESETS, T5Model

  cfg = PRESETS["tiny-v1.1"].replace(d_ff=64, num_layers=1, num_decoder_layers=1,
                                     name="tiny-parallel")
  verifier = T5Model.init(cfg, jax.random.PRNGKey(0))
  leaves, treedef = jax.tree.flatten(verifier.params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  noisy = [x + 0.6 * jnp.std(x) * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  drafter = verifier.replace(params=jax.tree.unflatten(treedef, noisy))
  return drafter, verifier


def input_ids(batch: int = 8) -> np.ndarray:
  rs = np.random.RandomState(0)
  ids = rs.randint(2, 64, size=(batch, 7)).astype(np.int32)
  for row, n in enumerate([7, 3, 5, 1, 7, 6, 2, 4][:batch]):   # ragged right padding
    ids[row, n:] = 0
  return ids


def _spec(x) -> list:
  """The array's PartitionSpec, one entry per dimension.

  Trailing unsharded dimensions may be left out of a spec (XLA's propagated
  shardings drop them: P('data', 'model') == P('data', 'model', None, None)),
  so pad with None to the array's rank before comparing.
  """
  spec = [None if a is None else str(a) for a in x.sharding.spec]
  return spec + [None] * (x.ndim - len(spec))


def run_mesh(out_dir: str):
  import jax
  import spec_cascade_jax as scj
  from jax.sharding import NamedSharding, PartitionSpec as P
  from spec_cascade_jax import parallel
  from spec_cascade_jax.models.t5 import t5x_checkpoint
  from spec_cascade_jax.parallel import checkpoint as pckpt

  assert jax.device_count() == 8, jax.devices()
  timings, report = {}, {}
  drafter, verifier = tiny_pair()
  ids = input_ids()
  results = {}
  for kw in METHODS:
    name = kw["method"]
    t0 = time.time()
    ref = scj.generate(drafter, verifier, ids, num_draft_tokens=GAMMA, max_new_tokens=MAX_NEW,
                       **kw)
    timings[f"{name}/unsharded"] = time.time() - t0
    print(name, round(timings[f"{name}/unsharded"], 1), file=sys.stderr, flush=True)
    results[f"{name}/unsharded/tokens"] = ref.tokens
    for k, v in ref.stats.items():
      results[f"{name}/unsharded/{k}"] = v
    for shape in MESHES[name]:
      mesh = parallel.make_mesh(mesh_shape=shape)
      t0 = time.time()
      res = parallel.sharded_generate(drafter, verifier, ids, mesh=mesh,
                                      num_draft_tokens=GAMMA, max_new_tokens=MAX_NEW, **kw)
      timings[f"{name}/{shape}"] = time.time() - t0
      print(name, shape, round(timings[f"{name}/{shape}"], 1), file=sys.stderr, flush=True)
      results[f"{name}/{shape}/tokens"] = res.tokens
      for k, v in res.stats.items():
        results[f"{name}/{shape}/{k}"] = v

  # --- Parameters and caches on the (2, 4) mesh, as the rules say.
  mesh = parallel.make_mesh(mesh_shape=(2, 4))
  sv = parallel.shard_model(verifier, mesh)
  p = sv.model.params
  report["param_specs"] = {
      "token_embedder/embedding": _spec(p["token_embedder"]["embedding"]),
      "decoder/layers_0/self_attention/query/kernel":
          _spec(p["decoder"]["layers_0"]["self_attention"]["query"]["kernel"]),
      "decoder/layers_0/self_attention/out/kernel":
          _spec(p["decoder"]["layers_0"]["self_attention"]["out"]["kernel"]),
      "encoder/layers_0/mlp/wi_0/kernel": _spec(p["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]),
      "encoder/layers_0/mlp/wo/kernel": _spec(p["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]),
      "decoder/logits_dense/kernel": _spec(p["decoder"]["logits_dense"]["kernel"]),
      "decoder/relpos_bias/rel_embedding": _spec(p["decoder"]["relpos_bias"]["rel_embedding"]),
      "decoder/decoder_norm/scale": _spec(p["decoder"]["decoder_norm"]["scale"]),
  }
  wi = p["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
  report["wi_0_shard_shape"] = list(wi.addressable_shards[0].data.shape)

  # Caches: init_cache and a step under jit with the same shardings; the
  # returned caches keep the rules' sharding.
  ids_sh = jax.device_put(ids, NamedSharding(mesh, P("data", None)))

  @jax.jit
  def cache_after_step(model, ids):
    cache = model.init_cache(ids, 16)
    tokens = jax.numpy.zeros((ids.shape[0], 2), jax.numpy.int32)
    _, cache = model.step(tokens, cache, jax.numpy.zeros((ids.shape[0],), jax.numpy.int32))
    return cache

  cache = cache_after_step(sv, ids_sh)
  key = cache["self_attention"]["layers_0"]["key"]
  cross = cache["cross_attention"]["layers_0"]["value"]
  report["cache_specs"] = {"self_key": _spec(key), "cross_value": _spec(cross),
                           "encoder_mask": _spec(cache["encoder_mask"])}
  report["cache_shard_shapes"] = {"self_key": list(key.addressable_shards[0].data.shape),
                                  "cross_value": list(cross.addressable_shards[0].data.shape)}

  # The compiled decode loop: per-device cache shapes, never the global ones.
  t0 = time.time()
  lowered, _ = parallel.lower_sharded_generate(
      drafter, verifier, ids, mesh=mesh, num_draft_tokens=GAMMA, max_new_tokens=MAX_NEW,
      **METHODS[1])
  hlo = lowered.compile().as_text()
  timings["hlo"] = time.time() - t0
  L, S, H, Dkv = MAX_NEW + GAMMA + 1, ids.shape[1], 4, 8
  report["hlo"] = {
      "has_while": " while(" in hlo or "while(" in hlo,
      "local_self_cache": f"f32[4,1,{L},{Dkv}]" in hlo,
      "local_cross_cache": f"f32[4,1,{S},{Dkv}]" in hlo,
      "global_self_cache": f"f32[8,{H},{L},{Dkv}]" in hlo,
      "global_cross_cache": f"f32[8,{H},{S},{Dkv}]" in hlo,
      "all_gather_of_cache": bool(re.search(
          rf"f32\[8,{H},({L}|{S}),{Dkv}\][^\n]*all-gather", hlo)),
  }

  # --- Sharded t5x checkpoint: bfloat16 zarr arrays, encoder attention in the
  # older 3-D layout; (2, 4) mesh reads quarter blocks, logits equal whole load.
  t0 = time.time()
  flat = t5x_checkpoint.flatten_params(verifier.params)
  for path in list(flat):
    parts = path.split("/")
    if parts[0] == "encoder" and parts[-3] == "attention":
      x = np.asarray(flat[path])
      flat[path] = x.reshape(H, Dkv, -1) if parts[-2] == "out" else x.reshape(-1, H, Dkv)
  ckpt = t5x_checkpoint.save_t5x_checkpoint(flat, os.path.join(out_dir, "ckpt"), 7,
                                            dtype="bfloat16", inline_threshold=512)
  reads = []
  orig = pckpt._read_ts_block

  def counting(store, index):
    block = orig(store, index)
    reads.append((int(np.prod(store.shape)), int(block.size)))
    return block

  pckpt._read_ts_block = counting
  sharded = parallel.load_t5x_sharded(ckpt, mesh)
  pckpt._read_ts_block = orig
  # The whole load, placed by shard_model: the same shardings, so one
  # compiled forward serves both, and every parameter must be equal.
  whole = parallel.shard_model(t5x_checkpoint.load_t5x_checkpoint(ckpt), mesh)
  report["ckpt_params_differ"] = [
      jax.tree_util.keystr(k) for (k, a), b in zip(
          jax.tree_util.tree_leaves_with_path(sharded.model.params),
          jax.tree.leaves(whole.model.params))
      if not np.array_equal(np.asarray(a), np.asarray(b))]
  dec = np.concatenate([np.zeros((8, 1), np.int32), ids[:, :5]], axis=1)
  forward = jax.jit(lambda m, a, b: m.logits(a, b))
  logits_sharded = forward(sharded, ids_sh, dec)
  logits_whole = forward(whole, ids_sh, dec)
  np.savez(os.path.join(out_dir, "logits.npz"), sharded=np.asarray(logits_sharded),
           whole=np.asarray(logits_whole))
  report["ckpt_reads"] = reads
  report["ckpt_logits_spec"] = _spec(logits_sharded)
  report["ckpt_wo_spec"] = _spec(sharded.model.params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"])
  report["ckpt_query_spec"] = _spec(
      sharded.model.params["encoder"]["layers_0"]["attention"]["query"]["kernel"])
  timings["checkpoint"] = time.time() - t0

  # --- Clear errors.
  errors = {}
  for label, fn in {
      "batch": lambda: parallel.sharded_generate(drafter, verifier, ids[:5], mesh=mesh,
                                                 method="speculative", max_new_tokens=4),
      "rules": lambda: parallel.Partitioner(logical_axis_rules=(("batch", "rows"),)),
  }.items():
    try:
      fn()
      errors[label] = None
    except ValueError as e:
      errors[label] = str(e)
  report["errors"] = errors

  run_pair(results, report, timings)
  report["timings"] = timings
  np.savez(os.path.join(out_dir, "mesh.npz"), **results)
  with open(os.path.join(out_dir, "mesh.json"), "w") as f:
    json.dump(report, f, indent=1)


def pair_input_ids() -> np.ndarray:
  """PAIR_TEXTS encoded with the pair's vocabulary, EOS appended, zero-padded."""
  import spec_cascade_jax as scj
  from spec_cascade_jax.decoding import padding
  from spec_cascade_jax.data.vocab import encode_with_eos

  vocab = scj.load_vocabulary(PAIR[2])
  return padding.pad_batch([encode_with_eos(vocab, t, 32) for t in PAIR_TEXTS], multiple=1)


def run_pair(results: dict, report: dict, timings: dict):
  """The bundled pair decoded on a (4, 2) mesh: the 3-head drafter's heads are
  replicated (a ReplicatedAxesWarning, once), the 4-head verifier's split;
  tokens and stats must equal unsharded decoding (the parent compares them)."""
  import warnings

  import jax
  import spec_cascade_jax as scj
  from spec_cascade_jax import parallel

  drafter, verifier = (scj.load_model(name) for name in PAIR[:2])
  ids = pair_input_ids()
  mesh = parallel.make_mesh(mesh_shape=PAIR_MESH)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", parallel.ReplicatedAxesWarning)
    for kw in METHODS[:2]:
      name = kw["method"]
      for label, extra in (("unsharded", {}), ("sharded", {"mesh": mesh})):
        t0 = time.time()
        res = scj.generate(drafter, verifier, ids, num_draft_tokens=GAMMA,
                           max_new_tokens=PAIR_MAX_NEW, **kw, **extra)
        timings[f"pair/{name}/{label}"] = time.time() - t0
        print("pair", name, label, round(timings[f"pair/{name}/{label}"], 1), file=sys.stderr,
              flush=True)
        results[f"pair/{name}/{label}/tokens"] = res.tokens
        for k, v in res.stats.items():
          results[f"pair/{name}/{label}/{k}"] = v
    # What each model became on this mesh (no compile: placement only).
    specs = {}
    for role, model in (("drafter", drafter), ("verifier", verifier)):
      sm = parallel.shard_model(model, mesh)
      p = sm.model.params
      cache = sm.cache_shardings(jax.eval_shape(lambda m: m.init_cache(ids, 8), model))
      key_spec = [None if a is None else str(a)
                  for a in cache["self_attention"]["layers_0"]["key"].spec]
      specs[role] = {
          "num_heads": model.config.num_heads,
          "replicated_axes": list(parallel.replicated_axes(model, mesh)),
          "query": _spec(p["decoder"]["layers_0"]["self_attention"]["query"]["kernel"]),
          "relpos": _spec(p["encoder"]["relpos_bias"]["rel_embedding"]),
          "wi": _spec(p["encoder"]["layers_0"]["mlp"]["wi"]["kernel"]),
          "embedding": _spec(p["token_embedder"]["embedding"]),
          "self_key_cache": key_spec + [None] * (4 - len(key_spec)),
      }
    # The compiled spec_cascade loop (a cache hit): each model's caches stay
    # per device, the verifier's split by heads, the drafter's by rows only.
    lowered, _ = parallel.lower_sharded_generate(
        drafter, verifier, ids, mesh=mesh, num_draft_tokens=GAMMA, max_new_tokens=PAIR_MAX_NEW,
        **METHODS[1])
    hlo = lowered.compile().as_text()
  rows = ids.shape[0] // PAIR_MESH[0]
  hlo_report = {}
  for role, model in (("drafter", drafter), ("verifier", verifier)):
    h, dkv = model.config.num_heads, model.config.d_kv
    local_h = h // PAIR_MESH[1] if specs[role]["self_key_cache"][1] else h
    lengths = f"({PAIR_MAX_NEW + GAMMA + 1}|{ids.shape[1]})"
    hlo_report[role] = {
        "local_cache": bool(re.search(rf"f32\[{rows},{local_h},{lengths},{dkv}\]", hlo)),
        "global_cache": bool(re.search(rf"f32\[{ids.shape[0]},{h},{lengths},{dkv}\]", hlo)),
        "all_gather_of_cache": bool(re.search(
            rf"f32\[{ids.shape[0]},{h},{lengths},{dkv}\][^\n]*all-gather", hlo))}
  report["pair"] = {"specs": specs, "mesh": list(PAIR_MESH), "input_ids": ids.tolist(),
                    "hlo": hlo_report,
                    "warnings": [str(w.message) for w in caught
                                 if issubclass(w.category, parallel.ReplicatedAxesWarning)]}


def run_multiprocess(out_dir: str, port: int, process_id: int):
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                             initialization_timeout=60)
  import spec_cascade_jax as scj
  from spec_cascade_jax import parallel

  assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
  print(f"process {process_id}: initialized, devices {jax.devices()}", file=sys.stderr,
        flush=True)
  drafter, verifier = tiny_pair()
  ids = input_ids()
  kw = dict(num_draft_tokens=GAMMA, max_new_tokens=MAX_NEW, **METHODS[1])
  # Data axis across the two processes, model axis inside each.
  mesh = parallel.make_mesh(num_partitions=2)
  res = parallel.sharded_generate(drafter, verifier, ids, mesh=mesh, **kw)
  print(f"process {process_id}: sharded decode done", file=sys.stderr, flush=True)
  # Per-host input pipeline: each process passes only its own 4 rows.
  local = ids[process_id * 4:(process_id + 1) * 4]
  res_local = parallel.sharded_generate(drafter, verifier, parallel.global_batch(local, mesh),
                                        mesh=mesh, **kw)
  # This process's own single-device reference.
  ref = scj.generate(drafter, verifier, ids, **kw)
  out = {"tokens": res.tokens, "tokens_local_feed": res_local.tokens, "ref": ref.tokens,
         "mesh_devices_by_process": np.asarray(
             [[d.process_index for d in row] for row in mesh.devices])}
  out.update({f"stat_{k}": v for k, v in res.stats.items()})
  out.update({f"refstat_{k}": v for k, v in ref.stats.items()})
  np.savez(os.path.join(out_dir, f"proc{process_id}.npz"), **out)
  jax.distributed.shutdown()


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  mode = sys.argv[1]
  if mode == "multiprocess":
    run_multiprocess(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
  else:
    raise SystemExit(f"unknown mode {mode!r}; the 8-device checks run through "
                     "tests/mesh_worker.py")
