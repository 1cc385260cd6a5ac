"""Sharded decoding (spec_cascade_jax.parallel) against unsharded decoding.

This pytest process keeps its single CPU device; the multi-device checks run in
subprocesses with fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N), several checks per
subprocess because compiles dominate: the 8-device ones in the one worker
this file shares with test_lm_partitioning.py (tests/mesh_worker.py, part
"t5": partitioning_worker.run_mesh), the two-process one in two workers of
its own. Every subprocess is bounded by a timeout and uses loopback addresses
only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from spec_cascade_jax import parallel
from spec_cascade_jax.models.t5 import PRESETS, T5Model
from spec_cascade_jax.parallel import partitioning as pt
from mesh_worker import UNKNOWN_FLAG
from mesh_worker import assert_drafts_accepted_and_rejected, assert_sharded_equals_unsharded
from mesh_worker import env as worker_env
from partitioning_worker import MESHES as WORKER_MESHES
from partitioning_worker import PAIR

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "partitioning_worker.py")
TIMEOUT_S = 540          # generous: CI machines are shared; normally ~20 s
METHODS = tuple(WORKER_MESHES)
MESHES = {method: [str(shape) for shape in shapes] for method, shapes in WORKER_MESHES.items()}


@pytest.fixture(scope="module")
def mesh_run(eight_device_run):
  out, errors = eight_device_run
  if errors.get("t5", "not run"):
    pytest.fail(f"the 8-device worker's T5 part failed:\n{errors.get('t5', 'not run')}")
  with open(os.path.join(out, "mesh.json")) as f:
    report = json.load(f)
  results = dict(np.load(os.path.join(out, "mesh.npz")))
  logits = dict(np.load(os.path.join(out, "logits.npz")))
  return report, results, logits


# ------------------------------------------------------------- 8 fake devices


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_sharded_equals_unsharded(mesh_run, method):
  _, results, _ = mesh_run
  ref = results[f"{method}/unsharded/tokens"]
  # The comparison means something: varied tokens, some drafts rejected.
  assert len(np.unique(ref)) > 8, ref
  assert results[f"{method}/unsharded/accepted"].sum() < \
      results[f"{method}/unsharded/draft_tokens"].sum()
  assert results[f"{method}/unsharded/accepted"].sum() > 0
  stat_names = [k.split("/")[-1] for k in results if k.startswith(f"{method}/unsharded/")]
  for mesh in MESHES[method]:
    np.testing.assert_array_equal(results[f"{method}/{mesh}/tokens"], ref, err_msg=mesh)
    for stat in stat_names:
      np.testing.assert_array_equal(results[f"{method}/{mesh}/{stat}"],
                                    results[f"{method}/unsharded/{stat}"],
                                    err_msg=f"{mesh} {stat}")


@pytest.mark.slow
def test_params_sharded_as_rules_say(mesh_run):
  report, _, _ = mesh_run
  specs = report["param_specs"]
  assert specs["token_embedder/embedding"] == ["model", None]           # (vocab, embed)
  assert specs["decoder/layers_0/self_attention/query/kernel"] == [None, "model"]
  assert specs["decoder/layers_0/self_attention/out/kernel"] == ["model", None]
  assert specs["encoder/layers_0/mlp/wi_0/kernel"] == [None, "model"]
  assert specs["encoder/layers_0/mlp/wo/kernel"] == ["model", None]
  assert specs["decoder/logits_dense/kernel"] == [None, "model"]        # (embed, vocab)
  assert specs["decoder/relpos_bias/rel_embedding"] == ["model", None]  # (heads, buckets)
  assert specs["decoder/decoder_norm/scale"] == [None]
  assert report["wi_0_shard_shape"] == [32, 16]                        # d_ff 64 / 4


@pytest.mark.slow
def test_caches_stay_sharded(mesh_run):
  report, _, _ = mesh_run
  for name in ("self_key", "cross_value"):
    assert report["cache_specs"][name] == ["data", "model", None, None], name
  assert report["cache_specs"]["encoder_mask"] == ["data", None]
  # [B, H, L, Dkv] = [8, 4, 16, 8] split 2 x 4 -> [4, 1, 16, 8] per device.
  assert report["cache_shard_shapes"] == {"self_key": [4, 1, 16, 8],
                                          "cross_value": [4, 1, 7, 8]}
  # In the compiled speculative while_loop every cache is per-device and never
  # gathered: the global [8, 4, L, 8] shape appears nowhere in the HLO.
  assert report["hlo"] == {"has_while": True, "local_self_cache": True,
                           "local_cross_cache": True, "global_self_cache": False,
                           "global_cross_cache": False, "all_gather_of_cache": False}


@pytest.mark.slow
def test_sharded_checkpoint_matches_whole(mesh_run):
  report, _, logits = mesh_run
  assert report["ckpt_params_differ"] == []
  np.testing.assert_allclose(logits["sharded"], logits["whole"], rtol=1e-5, atol=1e-5)
  assert report["ckpt_logits_spec"] == ["data", None, "model"]
  assert report["ckpt_wo_spec"] == ["model", None]
  assert report["ckpt_query_spec"] == [None, "model"]   # read from a 3-D [D, H, Dkv] array
  # Every TensorStore array is "model"-sharded 4 ways: each read is a quarter.
  reads = report["ckpt_reads"]
  assert reads and all(block * 4 == total for total, block in reads), reads


@pytest.mark.slow
def test_errors_name_the_fix(mesh_run):
  errors = mesh_run[0]["errors"]
  assert "not divisible by the 'data' mesh axis (2)" in errors["batch"]
  assert "pad the batch" in errors["batch"]
  assert "unknown mesh axis 'rows'" in errors["rules"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ("speculative", "spec_cascade"))
def test_bundled_pair_sharded_equals_unsharded(mesh_run, method):
  """demo-drafter (3 heads) -> demo-verifier (4 heads) on a (4, 2) mesh: the
  drafter's heads replicated, the verifier's split, the same tokens and stats."""
  report, results, _ = mesh_run
  key = f"pair/{method}"
  # The comparison means something: drafts accepted and rejected, and
  # (spec_cascade) tokens deferred to the verifier and not.
  assert_sharded_equals_unsharded(results, key)
  assert_drafts_accepted_and_rejected(results, key)
  if method == "spec_cascade":
    assert 0 < results[f"{key}/unsharded/deferrals"].sum() < \
        results[f"{key}/unsharded/num_tokens"].sum()
  pair = report["pair"]
  assert pair["mesh"] == [4, 2] and len(pair["input_ids"]) == 8
  drafter, verifier = pair["specs"]["drafter"], pair["specs"]["verifier"]
  assert (drafter["num_heads"], verifier["num_heads"]) == (3, 4)
  # Heads replicated for the drafter alone; its MLP and vocabulary stay split.
  assert drafter["replicated_axes"] == ["heads", "joined_kv"]
  assert drafter["query"] == drafter["relpos"] == [None, None]
  assert drafter["self_key_cache"] == ["data", None, None, None]
  assert verifier["replicated_axes"] == []
  assert verifier["query"] == [None, "model"] and verifier["relpos"] == ["model", None]
  assert verifier["self_key_cache"] == ["data", "model", None, None]
  for specs in (drafter, verifier):
    assert specs["wi"] == [None, "model"] and specs["embedding"] == ["model", None]
  # In the compiled loop both models' caches are per device, never gathered.
  for role in ("drafter", "verifier"):
    assert pair["hlo"][role] == {"local_cache": True, "global_cache": False,
                                 "all_gather_of_cache": False}, role
  # Said once, for the drafter, with the mesh size that would split it.
  assert len(pair["warnings"]) == 1, pair["warnings"]
  assert pair["warnings"][0].startswith(f"{PAIR[0]}: num_heads=3 is not divisible by the"
                                        " 'model' mesh axis (2)")
  assert "'model' size divides 3" in pair["warnings"][0]


# ---------------------------------------------------- two processes, gloo


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# The one documented unsupported case: jaxlib builds gloo's CPU collectives
# for Linux and macOS only; elsewhere (Windows) `make_gloo_tcp_collectives`
# raises JaxRuntimeError with exactly this message (jaxlib/xla.cc; the
# worker asks for gloo, jax's default in the jax versions setup.py allows).
# Any other worker failure, gloo's included, fails the test with its stderr.
_UNSUPPORTED = "make_gloo_tcp_collectives only implemented for linux and macos"


def _decode_in_two_processes(out_dir, fast: bool):
  """Runs the two workers; [(process, (stdout, stderr))]."""
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, WORKER, "multiprocess", str(out_dir), str(port),
                             str(i)], env=worker_env(2, fast), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=TIMEOUT_S))
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    err = "\n".join(p.communicate()[1][-2000:] for p in procs)
    pytest.fail(f"multi-process decode did not finish in {TIMEOUT_S} s:\n{err}")
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return list(zip(procs, outputs))


@pytest.mark.slow
def test_two_processes_decode_a_global_batch(tmp_path):
  done = _decode_in_two_processes(tmp_path, fast=True)
  if any(p.returncode and UNKNOWN_FLAG in e for p, (_, e) in done):
    done = _decode_in_two_processes(tmp_path, fast=False)   # an XLA without those flags
  procs = [p for p, _ in done]
  failed = [(i, e) for i, (p, (_, e)) in enumerate(done) if p.returncode]
  if failed:
    if any(_UNSUPPORTED in e for _, e in failed):
      pytest.skip(f"this jaxlib has no CPU multi-process collectives: {_UNSUPPORTED}")
    pytest.fail("worker failed:\n" + "\n".join(
        f"--- process {i} (exit {procs[i].returncode}) stderr:\n{e[-4000:]}" for i, e in failed))
  runs = [dict(np.load(tmp_path / f"proc{i}.npz")) for i in range(2)]
  for run in runs:
    # The data axis crosses the processes, the model axis stays inside each.
    np.testing.assert_array_equal(run["mesh_devices_by_process"], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(run["tokens"], run["ref"])
    np.testing.assert_array_equal(run["tokens_local_feed"], run["ref"])
    for k in [k for k in run if k.startswith("stat_")]:
      np.testing.assert_array_equal(run[k], run["ref" + k], err_msg=k)
  np.testing.assert_array_equal(runs[0]["tokens"], runs[1]["tokens"])
  assert len(np.unique(runs[0]["ref"])) > 8


# ------------------------------------------------ in-process (one device)


def test_rules_map_logical_axes():
  rules = pt.STANDARD_RULES
  assert pt.logical_to_spec(("batch", "heads", "length", "kv"), rules) == \
      jax.sharding.PartitionSpec("data", "model", None, None)
  # One mesh axis never shards two dimensions of one array.
  assert pt.logical_to_spec(("vocab", "mlp"), rules) == \
      jax.sharding.PartitionSpec("model", None)
  assert pt.logical_to_spec(("vocab", "embed"), pt.DATA_PARALLEL_RULES) == \
      jax.sharding.PartitionSpec(None, None)


def test_every_t5_param_and_cache_entry_has_axes():
  # Real sizes planned with eval_shape: nothing allocated.
  for name in ("t5-large", "t5.1.1-xl"):
    cfg = PRESETS[name]
    model = jax.eval_shape(lambda: T5Model.init(cfg, jax.random.PRNGKey(0)))
    axes = pt.t5_param_logical_axes(model.params)
    flat_axes = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple))
    flat_params = jax.tree.leaves(model.params)
    assert len(flat_axes) == len(flat_params)
    assert all(len(a) == p.ndim for a, p in zip(flat_axes, flat_params))
  cache = jax.eval_shape(lambda m: m.init_cache(np.ones((2, 5), np.int32), 9), model)
  axes = pt.t5_cache_logical_axes(cache)
  assert axes["self_attention"]["layers_0"]["key"] == ("batch", "heads", "length", "kv")
  assert axes["encoder_mask"] == ("batch", "length")


def _tiny_t5(num_heads: int, name: str, **kw) -> T5Model:
  cfg = PRESETS["tiny-v1.1"].replace(num_heads=num_heads, name=name, **kw)
  return jax.eval_shape(lambda: T5Model.init(cfg, jax.random.PRNGKey(0)))


def _specs(model, rules):
  """{parameter path: PartitionSpec} of a T5 under `rules` (nothing placed)."""
  axes = pt.t5_param_logical_axes(model.params)
  flat = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple))
  paths = [pt._path_str(k) for k, _ in jax.tree_util.tree_leaves_with_path(model.params)]
  return {path: pt.logical_to_spec(a, rules) for path, a in zip(paths, flat)}


def test_uneven_heads_replicated_for_that_model_only():
  """One set of rules, two models on a (4, 2) mesh: the 3-head T5's heads are
  replicated (once announced), the 4-head one's split; both split d_ff."""
  mesh = {"data": 4, "model": 2}
  three = _tiny_t5(3, "replicate-test-3-heads")
  four = _tiny_t5(4, "replicate-test-4-heads")
  cache_axes = ("batch", "heads", "length", "kv")
  with pytest.warns(parallel.ReplicatedAxesWarning,
                    match=r"replicate-test-3-heads: num_heads=3 is not divisible by the "
                          r"'model' mesh axis \(2\).*'heads', 'joined_kv'.*"
                          r"'model' size divides 3"):
    rules3 = pt.model_rules(three, mesh)
  with warnings.catch_warnings():
    warnings.simplefilter("error", parallel.ReplicatedAxesWarning)
    rules4 = pt.model_rules(four, mesh)
    assert pt.model_rules(three, mesh) == rules3          # said once per model and mesh
  assert parallel.replicated_axes(three, mesh) == ("heads", "joined_kv")
  assert parallel.replicated_axes(four, mesh) == ()
  assert rules4 == pt.STANDARD_RULES
  s3, s4 = _specs(three, rules3), _specs(four, rules4)
  q = "decoder/layers_0/self_attention/query/kernel"
  rel = "decoder/relpos_bias/rel_embedding"
  wi = "encoder/layers_0/mlp/wi_0/kernel"
  assert (s3[q], s3[rel], s3[wi]) == (P(None, None), P(None, None), P(None, "model"))
  assert (s4[q], s4[rel], s4[wi]) == (P(None, "model"), P("model", None), P(None, "model"))
  assert pt.logical_to_spec(cache_axes, rules3) == P("data", None, None, None)
  assert pt.logical_to_spec(cache_axes, rules4) == P("data", "model", None, None)


def test_uneven_parameter_dimension_replicated():
  """Any logical axis, not only heads: a vocabulary of 65 on a 2-way "model"
  axis is replicated for that model (embedding and head); d_ff stays split."""
  odd = _tiny_t5(4, "replicate-test-vocab-65", vocab_size=65)
  with pytest.warns(parallel.ReplicatedAxesWarning, match=r"'vocab' size 65.*'model' size "
                                                          r"divides 65"):
    rules = pt.model_rules(odd, {"data": 4, "model": 2})
  assert parallel.replicated_axes(odd, {"data": 4, "model": 2}) == ("vocab",)
  specs = _specs(odd, rules)
  assert specs["token_embedder/embedding"] == specs["decoder/logits_dense/kernel"] == \
      P(None, None)
  assert specs["encoder/layers_0/mlp/wi_0/kernel"] == P(None, "model")
  # The batch is the input's, not the model's: it must divide by "data".
  with pytest.raises(ValueError, match="pad the batch"):
    pt._spec_tree({"x": np.zeros((3, 2))}, {"x": ("batch", None)},
                  jax.sharding.AbstractMesh((2, 1), pt.MESH_AXES), rules, "cache")


@pytest.mark.slow
def test_single_device_mesh_matches_generate():
  """A (1, 1) mesh runs the same program in this process: a cheap regression check."""
  import spec_cascade_jax as scj
  from spec_cascade_jax.testing import BigramModel

  rs = np.random.RandomState(0)
  q = BigramModel(logits=jax.numpy.asarray(rs.normal(size=(16, 16)), jax.numpy.float32))
  p = BigramModel(logits=jax.numpy.asarray(rs.normal(size=(16, 16)), jax.numpy.float32))
  ids = np.ones((2, 3), np.int32)
  kw = dict(method="spec_cascade", rule="chow", alpha=0.2, num_draft_tokens=2,
            max_new_tokens=6, temperature=1.0, rng=jax.random.PRNGKey(4))
  ref = scj.generate(q, p, ids, **kw)
  res = parallel.sharded_generate(q, p, ids, mesh=parallel.make_mesh(), **kw)
  np.testing.assert_array_equal(res.tokens, ref.tokens)
  for k in ref.stats:
    np.testing.assert_array_equal(res.stats[k], ref.stats[k])


def test_bad_arguments():
  with pytest.raises(ValueError, match="does not divide the 1 devices"):
    parallel.make_mesh(num_partitions=2)
  with pytest.raises(ValueError, match=r"mesh_shape=\(2, 2\)"):
    parallel.make_mesh(mesh_shape=(2, 2))
  with pytest.raises(ValueError, match="Expected a jax.sharding.Mesh"):
    parallel.shard_model(None, mesh="not a mesh")
  with pytest.raises(TypeError, match="Unknown generate arguments"):
    parallel.sharded_generate(None, None, np.ones((1, 2), np.int32),
                              mesh=parallel.make_mesh(), gamma=3)


def test_gin_partitioners(tmp_path):
  import gin
  from spec_cascade_jax import main

  for name, parts in (("data_parallel", 1), ("model_parallel", 2)):
    run_file = tmp_path / f"{name}_run.gin"
    run_file.write_text("from __gin__ import dynamic_registration\n"
                        "from spec_cascade_jax import main\n"
                        "from spec_cascade_jax.parallel import partitioning\n"
                        f"include 'partitioning/{name}.gin'\n"
                        "main.run.fn = @partitioning.Partitioner\n")
    gin.clear_config()
    try:
      main.configure([str(run_file)])
      partitioner = gin.get_configurable(main.run)()
    finally:
      gin.clear_config()
    assert isinstance(partitioner, parallel.Partitioner)
    assert partitioner.num_partitions == parts
    assert partitioner.logical_axis_rules == pt.STANDARD_RULES
