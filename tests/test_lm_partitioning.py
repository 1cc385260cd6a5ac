"""Sharded decoder-only LMs (parallel/lm_axes.py, partitioning.py, hf_checkpoint.py).

The multi-device checks run in the one 8-fake-CPU-device subprocess that
this file shares with test_partitioning.py (tests/mesh_worker.py, part "lm":
lm_partitioning_worker.main), read by the `lm_run` fixture; it runs every
supported family (hf_lm.SUPPORTED_MODEL_TYPES), each on the mesh its FAMILIES
entry names, chosen so that K/V heads are replicated on both (2, 4) and
(4, 2) meshes and split on (4, 2), with the methods that entry names. The
expectations here follow from each family's config (tied head or not, K/V
heads dividing the "model" axis or not, q/k/v biases, q/k norms), not from
its name. The checks that need one
device only run in this process.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import spec_cascade_jax as scj
from spec_cascade_jax import parallel
from spec_cascade_jax.models.lm import HFCheckpointError, HFCheckpointNotFoundError, LMModel
from spec_cascade_jax.models.lm import config as lm_configs
from spec_cascade_jax.models.lm import hf as hf_lm
from spec_cascade_jax.parallel import partitioning as pt
from spec_cascade_jax.testing import tiny_lm_pair, tiny_t5_pair
from lm_partitioning_worker import FAMILIES as WORKER_FAMILIES
from mesh_worker import assert_drafts_accepted_and_rejected, assert_sharded_equals_unsharded

FAMILIES = tuple(f[0] for f in WORKER_FAMILIES)
METHODS = ("speculative", "spec_cascade")
MODEL_SIZE = {f[0]: f[1][1] for f in WORKER_FAMILIES}   # the worker's "model" axis
# (family, method) pairs the worker decodes (its FAMILIES' last field).
CASES = tuple((f[0], method) for f in WORKER_FAMILIES for method in f[4])


def _kv_split(family: str) -> bool:
  """Whether the family's K/V heads divide by its "model" axis (lm_axes.py):
  then they are split like the query heads, else replicated."""
  return lm_configs.tiny_config(family).num_kv_heads % MODEL_SIZE[family] == 0


def test_families_cover_every_type_mesh_and_kv_rule():
  """The worker's families: every supported type once, and K/V heads
  replicated on both meshes and split on some mesh (no family here has 4 K/V
  heads, which (2, 4) would split). Each method runs on both meshes, with K/V
  heads split and replicated, and with a tied and an untied head."""
  assert sorted(FAMILIES) == sorted(hf_lm.SUPPORTED_MODEL_TYPES)
  meshes = {f: tuple(shape) for f, shape, *_ in WORKER_FAMILIES}
  assert set(meshes.values()) == {(2, 4), (4, 2)}
  cases = {(meshes[f], _kv_split(f)) for f in FAMILIES}
  assert cases == {((2, 4), False), ((4, 2), False), ((4, 2), True)}, cases
  assert {f for f, _ in CASES} == set(FAMILIES) and {m for _, m in CASES} == set(METHODS)
  for method in METHODS:
    families = [f for f, m in CASES if m == method]
    assert {meshes[f] for f in families} == {(2, 4), (4, 2)}, method
    assert {_kv_split(f) for f in families} == {False, True}, method
    assert {lm_configs.tiny_config(f).tie_word_embeddings for f in families} == \
        {False, True}, method


@pytest.fixture(scope="module")
def lm_run(eight_device_run):
  out, errors = eight_device_run
  if errors.get("lm", "not run"):
    pytest.fail(f"the 8-device worker's LM part failed:\n{errors.get('lm', 'not run')}")
  with open(os.path.join(out, "lm.json")) as f:
    report = json.load(f)
  return report, dict(np.load(os.path.join(out, "lm.npz")))


# ------------------------------------------------------------- 8 fake devices


@pytest.mark.slow
@pytest.mark.parametrize("family, method", CASES)
def test_sharded_equals_unsharded(lm_run, family, method):
  """scj.generate(mesh=) with eos_id and ragged input_lengths: same tokens and stats."""
  report, results = lm_run
  key = f"{family}/{method}"
  # The comparison means something: full-length rows, and drafts accepted and
  # rejected (speculative).
  ref = assert_sharded_equals_unsharded(results, key)
  assert (results[f"{key}/unsharded/num_tokens"] == ref.shape[1]).any()
  if method == "speculative":
    assert_drafts_accepted_and_rejected(results, key)
    # eos_id reached the sharded loop: it is not the model's own EOS, and row 1
    # (whose first greedy token it is) stops after it.
    eos = report[family]["eos"]
    assert [eos] != report[family]["sharded_eos_id"]
    assert ref[1, 0] == eos and results[f"{key}/unsharded/num_tokens"][1] == 1


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_params_and_caches_sharded_as_rules_say(lm_run, family):
  report = lm_run[0][family]
  specs, cache = report["param_specs"], report["cache_specs"]
  cfg = report["config"]
  model = MODEL_SIZE[family]
  assert lm_run[0][family]["ckpt"]["model_size"] == model
  assert cfg == lm_configs.tiny_config(family).replace(
      name=cfg["name"]).to_dict()                   # the worker's verifier: the tiny family
  # K/V heads split like the query heads when they divide by "model", else
  # replicated (lm_axes.py); the batch is split either way.
  kv = "model" if cfg["num_kv_heads"] % model == 0 else None
  expected = {"token_embedder/embedding": ["model", None],     # (vocab, embed)
              "query/kernel": [None, "model"],                 # (embed, joined_kv)
              "key/kernel": [None, kv], "value/kernel": [None, kv],
              "out/kernel": ["model", None],
              "mlp/wi_0/kernel": [None, "model"], "mlp/wo/kernel": ["model", None],
              "decoder_norm/scale": [None]}
  if not cfg["tie_word_embeddings"]:
    expected["logits_dense/kernel"] = [None, "model"]          # untied head: vocab split
  if cfg["qkv_bias"]:                                           # Qwen2
    expected.update({"query/bias": ["model"], "key/bias": [kv], "value/bias": [kv]})
  if cfg["out_bias"]:
    expected["out/bias"] = [None]
  if cfg["qk_norm"]:                                            # Gemma 3: over head_dim
    expected.update({"query_norm/scale": [None], "key_norm/scale": [None]})
  assert specs == expected
  assert cache["offset"] == cache["last_token"] == ["data"]
  assert cache["key"] == ["data", kv, None, None]
  b, kv_heads, slots, dh = report["cache_key_shape"]
  assert kv_heads == cfg["num_kv_heads"]
  local_kv = kv_heads // model if kv else kv_heads
  assert report["cache_key_shard_shape"] == [b // (8 // model), local_kv, slots, dh]
  # The compiled while_loop holds per-device caches and never gathers one.
  assert report["hlo"] == {"local_cache": True, "global_cache": False,
                           "all_gather_of_cache": False}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_sharded_hf_checkpoint_reads_own_slices(lm_run, family):
  """load_hf_lm_sharded == shard_model(load_hf_lm); each device's block is read
  (once per process), never a whole sharded tensor."""
  ckpt = lm_run[0][family]["ckpt"]
  assert ckpt["mismatched"] == [] and ckpt["spec_diff"] == [] and ckpt["config_equal"]
  assert ckpt["eos_id"] == lm_run[0][family]["sharded_eos_id"]
  by_name: dict[str, list] = {}
  for r in ckpt["reads"]:
    by_name.setdefault(r["name"], []).append(r)
  assert len(by_name) == ckpt["num_params"]
  model = MODEL_SIZE[family]
  split = set()
  for name, reads in by_name.items():
    total = int(np.prod(reads[0]["shape"]))
    blocks = {tuple(map(tuple, r["index"])) for r in reads}
    assert len(blocks) == len(reads), name           # no block read twice
    for r in reads:                                  # equal blocks that tile the tensor
      assert int(np.prod(r["block"])) * len(blocks) == total, (name, r)
    assert len(blocks) in (1, model), name           # replicated, or one per model shard
    if len(blocks) > 1:
      split.add(re.sub(r"^(model\.)?(layers\.\d+\.)?", "", name))
  # What the family's config says is split (test_params_and_caches_...); the
  # rest (norms, q/k norms, o_proj's bias, replicated K/V) is read whole.
  cfg = lm_run[0][family]["config"]
  kv_split = cfg["num_kv_heads"] % model == 0
  expected = {"embed_tokens.weight", "self_attn.q_proj.weight", "self_attn.o_proj.weight",
              "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}
  if not cfg["tie_word_embeddings"]:
    expected.add("lm_head.weight")
  if kv_split:
    expected |= {"self_attn.k_proj.weight", "self_attn.v_proj.weight"}
  if cfg["qkv_bias"]:
    expected.add("self_attn.q_proj.bias")
    if kv_split:
      expected |= {"self_attn.k_proj.bias", "self_attn.v_proj.bias"}
  assert split == expected
  if cfg["qk_norm"]:
    assert len(by_name["model.layers.0.self_attn.q_norm.weight"]) == 1
  # Transposed kernels are read transposed: q_proj [H*Dh, D] split on its out rows.
  for r in by_name["model.layers.0.self_attn.q_proj.weight"]:
    (o0, o1), (i0, i1) = r["index"]
    assert (i0, i1) == (0, r["shape"][1]) and (o1 - o0) * model == r["shape"][0]


# ------------------------------------------------ in-process (one device)


def _abstract(cfg) -> LMModel:
  return jax.eval_shape(lambda: LMModel.init(cfg, jax.random.PRNGKey(0), jit=False))


def _covered(tree, axes):
  flat_axes = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple))
  flat = jax.tree.leaves(tree)
  assert len(flat_axes) == len(flat)
  assert all(len(a) == np.ndim(x) for a, x in zip(flat_axes, flat))


@pytest.mark.slow
def test_every_lm_param_and_cache_entry_has_axes():
  # Every published preset (eval_shape: nothing allocated) and every tiny
  # family, with each optional parameter switched on somewhere.
  configs = [lm_configs.PRESETS[n] for n in sorted(lm_configs.PRESETS)]
  configs += [lm_configs.tiny_config(t) for t in lm_configs.MODEL_TYPES]
  configs.append(lm_configs.tiny_config("llama", qkv_bias=True, out_bias=True))
  for cfg in configs:
    model = _abstract(cfg)
    axes = parallel.lm_param_logical_axes(model.params)
    _covered(model.params, axes)
  axes = parallel.lm_param_logical_axes(model.params)
  att = axes["layers_0"]["attention"]
  assert att["key"]["kernel"] == ("embed", "kv_heads") and att["key"]["bias"] == ("kv_heads",)
  assert att["query"]["bias"] == ("joined_kv",) and att["out"]["bias"] == ("embed",)
  gemma3 = _abstract(lm_configs.tiny_config("gemma3_text"))
  g_axes = parallel.lm_param_logical_axes(gemma3.params)["layers_0"]["attention"]
  assert g_axes["query_norm"]["scale"] == g_axes["key_norm"]["scale"] == ("kv",)
  for t in lm_configs.MODEL_TYPES:
    model = _abstract(lm_configs.tiny_config(t))
    cache = jax.eval_shape(lambda m: m.init_cache(np.ones((2, 5), np.int32), 9), model)
    axes = parallel.lm_cache_logical_axes(cache)
    _covered(cache, axes)
    assert axes["layers"]["layers_1"]["value"] == ("batch", "kv_heads", "length", "kv")
    assert axes["offset"] == axes["last_token"] == ("batch",)


def test_kv_heads_replicated_only_when_uneven():
  kv_spec = lambda rules: pt.logical_to_spec(("batch", "kv_heads", "length", "kv"), rules)  # noqa: E731
  gqa = _abstract(lm_configs.tiny_config("llama"))          # 4 heads, 2 K/V heads
  mqa = _abstract(lm_configs.tiny_config("gemma"))          # 4 heads, 1 K/V head
  assert kv_spec(pt.model_rules(gqa, {"data": 4, "model": 2})) == P("data", "model", None, None)
  assert kv_spec(pt.model_rules(gqa, {"data": 2, "model": 4})) == P("data", None, None, None)
  assert kv_spec(pt.model_rules(mqa, {"data": 4, "model": 2})) == P("data", None, None, None)
  # Query heads keep their split either way.
  rules = pt.model_rules(mqa, {"data": 2, "model": 4})
  assert pt.logical_to_spec(("embed", "joined_kv"), rules) == P(None, "model")
  # Data parallelism: nothing to resolve.
  assert pt.model_rules(gqa, {"data": 8, "model": 1}) == pt.STANDARD_RULES


def test_uneven_query_heads_replicated_and_announced():
  """4 query heads on an 8-way "model" axis: replicated for this model with a
  ReplicatedAxesWarning naming the fix; its uneven K/V heads silently."""
  gqa = _abstract(lm_configs.tiny_config("llama", name="replicate-test-llama"))
  mesh = {"data": 1, "model": 8}
  with pytest.warns(parallel.ReplicatedAxesWarning,
                    match=r"replicate-test-llama: num_heads=4 is not divisible by the "
                          r"'model' mesh axis \(8\).*'joined_kv'.*'model' size divides 4"):
    rules = pt.model_rules(gqa, mesh)
  assert parallel.replicated_axes(gqa, mesh) == ("kv_heads", "joined_kv")
  assert pt.logical_to_spec(("embed", "joined_kv"), rules) == P(None, None)
  assert pt.logical_to_spec(("batch", "kv_heads", "length", "kv"), rules) == \
      P("data", None, None, None)
  assert pt.logical_to_spec(("embed", "mlp"), rules) == P(None, "model")   # d_ff 64 / 8
  # K/V heads alone (query heads split) are no news: no warning.
  with warnings.catch_warnings():
    warnings.simplefilter("error", parallel.ReplicatedAxesWarning)
    pt.model_rules(_abstract(lm_configs.tiny_config("gemma", name="replicate-test-mqa")),
                   {"data": 4, "model": 2})
  assert pt.model_rules(gqa, mesh, pt.DATA_PARALLEL_RULES) == pt.DATA_PARALLEL_RULES


def test_sharded_model_forwards_eos_and_input_lengths():
  _, lm = tiny_lm_pair(jax.random.PRNGKey(0), "llama", init_std=0.3)
  sharded = parallel.shard_model(lm, parallel.make_mesh())
  assert sharded.eos_id == lm.eos_id == (127,)
  assert sharded.decoder_only and not parallel.shard_model(
      tiny_t5_pair(verifier_layers=1)[1], parallel.make_mesh()).decoder_only
  ids = np.full((2, 5), 7, np.int32)
  cache = sharded.init_cache(ids, 4, np.asarray([5, 2], np.int32))
  np.testing.assert_array_equal(cache["offset"], [4, 1])
  assert cache["layers"]["layers_0"]["key"].sharding.spec[0] == "data"
  with pytest.raises(ValueError, match=r"input_lengths\[1\] = 0 is outside \[1, 5\]"):
    scj.generate(lm, lm, ids, method="speculative", mesh=parallel.make_mesh(),
                 input_lengths=np.asarray([5, 0], np.int32))


def test_hf_lm_sharded_on_one_device(tmp_path):
  """The loader's bookkeeping in-process (no compile): equal to the whole load;
  a missing tensor or directory names itself."""
  drafter, _ = tiny_lm_pair(jax.random.PRNGKey(3), "qwen2", init_std=0.3)   # q/k/v biases
  hf_lm.save_hf_lm(drafter, str(tmp_path / "m"))
  mesh = parallel.make_mesh()
  loaded = parallel.load_hf_lm_sharded(str(tmp_path / "m"), mesh)
  whole = hf_lm.load_hf_lm(str(tmp_path / "m"))
  assert loaded.model.config == whole.config and loaded.mesh == mesh
  for a, b in zip(jax.tree.leaves(loaded.model.params), jax.tree.leaves(whole.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  from safetensors.numpy import load_file, save_file
  tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
  del tensors["model.layers.0.self_attn.k_proj.bias"]
  save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
  with pytest.raises(HFCheckpointError, match=r"'model.layers.0.self_attn.k_proj.bias' "
                                              r"\(for parameter layers_0/attention/key/bias\)"):
    parallel.load_hf_lm_sharded(str(tmp_path / "m"), mesh)
  with pytest.raises(HFCheckpointNotFoundError, match="is not a directory"):
    parallel.load_hf_lm_sharded(str(tmp_path / "missing"), mesh)
