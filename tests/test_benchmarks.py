"""The benchmark scripts' pieces on tiny shapes (benchmarks/).

Mostly gpu.py, the one script a lent accelerator runs: a run on the device
machine is short and cannot be repeated at will, so what it computes beside
the timings (bytes per step, random weights, the JSON it writes, errors
recorded rather than fatal) is checked here, on the CPU. Then the helpers of
common.py, round_profile.py, speed.py, train_step.py, quality.py and
latency_fit.py.
"""

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import common  # noqa: E402
from spec_cascade_jax.evaluation import step_costs, translation  # noqa: E402
import gpu  # noqa: E402


@pytest.fixture(scope="module")
def smoke_json(tmp_path_factory):
  out = tmp_path_factory.mktemp("gpu")
  gpu.main(["--smoke", "--pairs", "t5", "--batches", "1", "--sections", "steps,ours,profile",
            "--out", str(out)])
  with open(out / "gpu.json") as f:
    return json.load(f), out


@pytest.mark.slow
def test_random_model_has_the_init_shapes_in_bfloat16():
  cfg = gpu.SMOKE_VERIFIER
  model = gpu.random_model(cfg, 0)
  ref = jax.eval_shape(lambda: gpu.T5Model.init(cfg, jax.random.PRNGKey(0)).params)
  assert jax.tree.structure(model.params) == jax.tree.structure(ref)
  for got, want in zip(jax.tree.leaves(model.params), jax.tree.leaves(ref)):
    assert got.shape == want.shape and got.dtype == jnp.bfloat16
  assert model.config.dtype == "bfloat16"
  leaves = [np.asarray(x, np.float32) for x in jax.tree.leaves(model.params)]
  assert all(np.isfinite(x).all() for x in leaves)
  assert any(x.std() > 0 for x in leaves if x.ndim == 2)  # matrices are random, not ones


def test_step_bytes_counts_weights_and_caches():
  model = gpu.to_bf16(gpu.random_model(gpu.SMOKE_VERIFIER, 0))
  c = model.config
  weights = gpu.nbytes(model.params["decoder"]) + gpu.nbytes(model.params["token_embedder"])
  per_slot = 2 * c.n_decoder_layers * c.num_heads * c.d_kv * 2  # K and V, bf16
  assert gpu.step_bytes(model, 1, 10, 20) == weights + per_slot * 30
  assert gpu.step_bytes(model, 4, 10, 20) == weights + 4 * per_slot * 30


@pytest.mark.slow
def test_smoke_run_writes_steps_floors_and_a_profile(smoke_json):
  report, out = smoke_json
  assert report["errors"] == {} and report["skipped"] == []
  pair = report["pairs"]["t5"]
  for k in (1, 6):
    step = pair[f"verifier_step_b1_k{k}"]
    assert step["ms"] > 0 and step["floor_ms"] > 0
    assert step["floor_ratio"] == pytest.approx(step["ms"] / step["floor_ms"])
  prof = pair["profile_b1_k1"]
  assert prof["steps"] == 16 and prof["top"] and prof["threads"]
  assert os.path.isfile(out / "trace_smoke-v.json.gz")
  ours = pair["ours_b1"]  # batch 1: generate timed with and without pad_single_row
  for k in ("spec", "verifier", "spec_1row", "verifier_1row"):
    assert ours[f"{k}_ms_per_token"] > 0, k
  assert ours["round_ms"] == pytest.approx(ours["spec_ms_per_token"] * 16 / ours["rounds"])


def test_a_failing_section_is_recorded_and_the_run_goes_on(tmp_path):
  args = argparse.Namespace(budget_s=1e9, out=str(tmp_path))
  report = gpu.Report(args)
  store = {}

  def boom():
    raise RuntimeError("no such kernel")

  assert report.section("bad", boom, store) is None
  assert report.section("good", lambda: 3.0, store) == 3.0
  assert "no such kernel" in report.data["errors"]["bad"] and store == {"good": 3.0}
  with open(tmp_path / "gpu.json") as f:
    assert json.load(f)["errors"].keys() == {"bad"}
  args.budget_s = -1.0  # spent: later sections are skipped, not run
  assert report.section("late", lambda: 1 / 0, store) is None
  assert report.data["skipped"] == ["late"] and "late" not in report.data["errors"]


def test_step_time_subtracts_the_encoder_and_divides_by_the_loop(monkeypatch):
  """(fastest loop − fastest encoding) / inner, never negative; the timed loop
  runs `inner` steps of `chunk` tokens."""
  seen = {}

  class Done:
    def block_until_ready(self):
      return self

  def fake_loop(model, ids, *, chunk, inner, cache_len):
    seen.update(chunk=chunk, inner=inner, cache_len=cache_len)
    return Done()

  def fake_times(fns, repeats):
    assert set(fns) == {"loop", "enc"} and repeats == 3
    fns["loop"]()
    return {"loop": [0.9, 0.5, 0.7], "enc": [0.2, 0.1, 0.3]}

  # The one definition is the library's (the sweep's step costs); common re-exports it.
  assert common.step_time is step_costs.step_time
  monkeypatch.setattr(step_costs, "step_loop", fake_loop)
  monkeypatch.setattr(step_costs, "interleaved_times", fake_times)
  assert common.step_time("model", "ids", 6, 24, 8, 3) == pytest.approx((0.5 - 0.1) / 8)
  assert seen == {"chunk": 6, "inner": 8, "cache_len": 24}
  monkeypatch.setattr(step_costs, "interleaved_times",
                      lambda fns, repeats: {"loop": [0.1], "enc": [0.2]})
  assert common.step_time("model", "ids", 1, 24, 8, 1) == 0.0  # noise: clamped at 0


@pytest.mark.slow
def test_step_time_of_a_real_decoder_is_positive_and_small():
  model = gpu.random_model(gpu.SMOKE_DRAFTER, 0)
  ids = jnp.ones((1, 8), jnp.int32)
  t = common.step_time(model, ids, 1, 24, 8, 2)
  assert 0 < t < 0.05  # seconds per step of a 1-layer d64 decoder


def test_an_xla_variant_that_fails_reports_its_output(tmp_path):
  args = argparse.Namespace(smoke=True, repeats=1, inner=2, out=str(tmp_path),
                            variant_timeout_s=120)
  res = gpu.xla_variant(args, "--no_such_xla_flag_for_this_test", 0)
  assert res["rc"] != 0 and "steps" not in res
  assert "no_such_xla_flag_for_this_test" in res["output_tail"]


@pytest.mark.slow
def test_round_profile_finds_every_phase_of_a_speculative_round():
  import round_profile
  from spec_cascade_jax.decoding import api, loop
  from spec_cascade_jax.testing import tiny_t5_pair
  drafter, verifier = tiny_t5_pair(jax.random.PRNGKey(0), verifier_layers=1, drafter_layers=1)
  ids = jnp.ones((1, 5), jnp.int32)
  params = loop.DecodeParams(alpha=jnp.full((1,), 0.2), temperature=jnp.zeros((1,)),
                               top_p=jnp.ones((1,)))
  text = api.jitted_decode.lower(
      drafter, verifier, ids, params, jax.random.PRNGKey(0), method="spec_cascade",
      rule="token_v1", num_draft_tokens=2, top_k=0, max_new_tokens=4, seq_confidence="",
      ngram_size=0).compile().as_text()
  found = set(round_profile.op_phases(text).values())
  for phase in ("encode/model", "draft/model", "draft/kernel", "verify/model",
                "verify/kernel", "target/kernel", "accept/kernel", "commit/kernel"):
    assert phase in found, (phase, sorted(found))


def test_round_profile_attribution_helpers():
  import round_profile
  hlo = "\n".join([
      '  %a.1 = f32[1,8]{1,0} fusion(%p.0), kind=kLoop, metadata={op_name='
      '"jit(f)/while/body/verify/T5Module.decode_step/decoder/mlp/relu"}',
      "  %dot.2 = f32[1,4]{1,0} dot(%a.1, %w.3), lhs_contracting_dims={1}",
      '  %s.4 = f32[1]{0} reduce(%dot.2), metadata={op_name="jit(f)/while/body/accept/max"}',
      '  %n.5 = s32[] add(%i, %j), metadata={op_name="jit(f)/while/body/add"}'])
  assert round_profile.op_phases(hlo) == {
      "a.1": "verify/model", "dot.2": "verify/model",  # unnamed: from its operand
      "s.4": "accept/kernel", "n.5": "other"}
  # Ops running at once on two threads count once.
  assert round_profile.union_length([(0, 2), (1, 3), (5, 6), (5.5, 5.8)]) == 4
  # A loop's or conditional's own event spans its body's ops: not counted again.
  phases = {"fusion.2": "step/model", "while.155": "other", "cond.68": "other",
            "conditional.3": "other", "copy.455": "other"}
  assert [n for n in phases if round_profile.counted(n, phases)] == ["fusion.2", "copy.455"]
  assert not round_profile.counted("unknown.1", phases)
  # A batch's loop runs as long as its busiest row; tokens add up over rows.
  stats = [{"rounds": np.array([3, 7, 5]), "num_tokens": np.array([9, 20, 6])},
           {"rounds": np.array([4]), "num_tokens": np.array([11])}]
  assert round_profile.loop_counts(stats, "rounds") == (11, 46)


def test_speed_batch1_inputs_pad_to_one_length_or_per_bucket():
  import speed
  examples = [{"ids": [5] * n} for n in (3, 20, 40)]
  assert [x.shape for x in speed.batch1_inputs(examples)] == [(1, 48)] * 3
  assert [x.shape for x in speed.batch1_inputs(examples, 16)] == [(1, 16), (1, 32), (1, 48)]
  assert all(x[0, :3].tolist() == [5, 5, 5] and x[0, -1] == 0
             for x in speed.batch1_inputs(examples[:1], 16))


@pytest.mark.slow
def test_drafter_hits_marks_where_the_drafter_reproduces_the_output():
  from spec_cascade_jax.testing import tiny_t5_pair
  from spec_cascade_jax.decoding.greedy import greedy_ids
  drafter, verifier = tiny_t5_pair(jax.random.PRNGKey(1), verifier_layers=1, drafter_layers=1)
  sources = [[5, 9, 1], [7, 3, 8, 2, 1], [4, 1]]
  outputs = greedy_ids(verifier, sources, max_new_tokens=6)
  own = translation.drafter_hits(verifier, sources, outputs, batch_size=2)
  assert [len(h) for h in own] == [len(o) for o in outputs]
  assert all(h.all() for h in own)  # a model reproduces its own greedy tokens
  other = translation.drafter_hits(drafter, sources, outputs, batch_size=2)
  assert not all(h.all() for h in other)  # an unrelated random drafter does not


def test_interleaved_times_rewarm_times_only_warm_calls():
  calls = []
  fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
  times = common.interleaved_times(fns, repeats=2, warmup=False, rewarm=True)
  # Every timed call directly follows an untimed call of the same fn.
  assert calls == ["a", "a", "b", "b", "a", "a", "b", "b"]
  assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
  calls.clear()
  common.interleaved_times(fns, repeats=2, warmup=False)
  assert calls == ["a", "b", "a", "b"]


@pytest.mark.slow
def test_train_step_times_both_dtypes_on_real_packed_batches(tmp_path):
  import train_step
  out = tmp_path / "ts.json"
  report = train_step.main(["--d-model", "32", "--d-ff", "64", "--heads", "2", "--layers",
                            "1+1", "--rows", "4", "--rounds", "2", "--steps", "1",
                            "--json", str(out)])
  assert [r["dtype"] for r in report["rows"]] == ["float32", "bfloat16"]
  assert all(len(v) == 2 and min(v) > 0 for v in report["per_step"].values())
  assert report["ratio_min"] <= report["ratio_median"] <= report["ratio_max"]
  assert json.loads(out.read_text())["args"]["layers"] == "1+1"
  batch = train_step.batches("gettext_en_de", "gettext", rows=4, max_len=64, count=1,
                             seed=0)[0]
  assert batch.inputs.shape == (4, 64) and batch.input_segments.max() > 1  # packed


@pytest.mark.slow
def test_quality_records_fingerprints_and_samples_and_keeps_finished_splits(
    tmp_path, monkeypatch):
  import quality
  from spec_cascade_jax.models.checkpoint import save_model
  from spec_cascade_jax.models.t5 import T5Config, T5Model
  from spec_cascade_jax.training.distill import params_fingerprint
  dirs = []
  for i in range(2):
    cfg = T5Config(vocab_size=8000, d_model=16, d_kv=8, d_ff=32, num_heads=2, num_layers=1,
                   num_decoder_layers=1, name=f"tiny{i}")
    model = T5Model.init(cfg, jax.random.PRNGKey(i))
    dirs.append(save_model(model, str(tmp_path / f"m{i}")))
  out = tmp_path / "q.json"
  args = ["--models", ",".join(dirs), "--vocabulary", "gettext", "--corpus", "gettext_en_de",
          "--splits", "validation", "--examples", "3", "--samples", "2", "--json", str(out)]
  report = quality.main(args)
  rep = report["splits"]["validation"]
  assert rep["examples"] == 3 and len(rep["samples"]["en"]) == 2
  assert all(len(rep["samples"][d]) == 2 for d in dirs)
  from spec_cascade_jax.models.loading import load_model
  assert report["models"][dirs[0]]["params_sha256"] == params_fingerprint(
      load_model(dirs[0]).params)
  # A rerun keeps the finished split instead of decoding it again ...
  monkeypatch.setattr(translation, "evaluate_pair", lambda *a, **k: pytest.fail("redone"))
  assert quality.main(args)["splits"]["validation"] == json.loads(out.read_text())[
      "splits"]["validation"]
  # ... but not when the models changed.
  swapped = list(args)
  swapped[1] = ",".join(reversed(dirs))
  with pytest.raises(pytest.fail.Exception, match="redone"):
    quality.main(swapped)


def test_latency_fit_recovers_fixed_and_per_iteration_costs():
  import latency_fit
  its = np.array([2, 3, 5, 8, 13])
  out = latency_fit.fit(its, 0.020 + 0.004 * its)
  assert out["fixed_ms"] == pytest.approx(20.0) and out["per_iteration_ms"] == pytest.approx(4.0)
  assert out["r2"] == pytest.approx(1.0) and out["mean_iterations"] == pytest.approx(6.2)
  with pytest.raises(ValueError, match="different iteration counts"):
    latency_fit.fit([4, 4, 4], [0.1, 0.2, 0.3])
  stats = {"rounds": np.array([3]), "num_tokens": np.array([7])}
  assert latency_fit.iteration_counts(stats, "speculative") == 3
  assert latency_fit.iteration_counts(stats, "verifier") == 7
  assert [latency_fit.iteration_unit(m) for m in ("spec_cascade", "seq_cascade")] == [
      "round", "token"]


@pytest.mark.parametrize("script", ["speed", "vs_hf", "round_profile", "gpu", "quality"])
def test_the_scripts_run_the_one_bundled_pair(script, capsys):
  """No script offers a choice of bundled pair: they all run common.DEMO."""
  import importlib
  with pytest.raises(SystemExit) as done:
    importlib.import_module(script).main(["--help"])
  assert done.value.code == 0
  assert "--demo-pair" not in capsys.readouterr().out


def test_the_bundled_pair_is_the_main_jobs():
  """common.DEMO names the pair, vocabulary and task that configs/demo.gin runs."""
  import gin
  from spec_cascade_jax import main
  try:
    main.configure([os.path.join(ROOT, "configs", "demo.gin")])
    macro = lambda name: gin.query_parameter(f"{name}/macro.value")  # noqa: E731
    assert common.DEMO == common.DemoPair(macro("DRAFTER"), macro("VERIFIER"),
                                          macro("VOCABULARY"), macro("TASK"))
  finally:
    gin.clear_config()


def test_cost_model_reads_the_accelerators_recorded_step_costs():
  """The projection prices counts with gpu.py's recorded batch-1 calls: the
  drafter step and the verifier's 1- and 6-token calls (BENCHMARKS.md's H200
  table), encoders 0 (not recorded)."""
  import cost_model
  costs, info = cost_model.accelerator_costs(cost_model.ACCELERATOR_FILE, "t5")
  assert info["device"] == "NVIDIA H200" and info["verifier"] == "t5-large"
  assert list(costs.verifier_chunk) == [1, 6]
  assert round(1e3 * costs.verifier_step, 3) == 1.574
  assert round(1e3 * costs.chunk(6), 3) == 1.042
  assert round(1e3 * costs.drafter_step, 3) == 0.271
  assert costs.encode_drafter == costs.encode_verifier == 0.0


def test_kernel_overhead_free_models_accept_every_draft_and_never_stop_early():
  """kernel_overhead.py times a loop's own work per iteration: its free models
  must run every decode to max_new_tokens, the kernel's in full rounds of γ+1
  (drafter and verifier agree), one-model decoding a token an iteration."""
  import kernel_overhead
  rows = {r["method"]: r for r in kernel_overhead.measure(64, gamma=3, max_new_tokens=12,
                                                          repeats=1)}
  assert rows["verifier"]["iterations"] == 12
  assert rows["speculative"]["iterations"] == rows["speculative+heuristic"]["iterations"] == 3
  assert all(r["us_per_iteration_min"] > 0 for r in rows.values())
