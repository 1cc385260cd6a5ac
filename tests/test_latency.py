"""The paired latency protocol (evaluation/latency.py) and a sweep interrupted mid-point."""

from __future__ import annotations

import gc
import os

import jax
import numpy as np
import pytest

from spec_cascade_jax import testing
from spec_cascade_jax.evaluation import grids, infer, latency, sweep


class DriftingClock:
  """A fake perf_counter: each decode costs base × speed, and the machine
  slows down by `drift` per call (other load arriving)."""

  def __init__(self, drift):
    self.now, self.speed, self.drift, self.calls = 0.0, 1.0, drift, []
    self.gc_enabled = []

  def perf_counter(self):
    return self.now

  def decoder(self, name, base):
    def run(ids):
      self.calls.append((name, ids.shape))
      self.gc_enabled.append(gc.isenabled())
      self.now += base * self.speed
      self.speed *= self.drift
    return run


def test_pairing_cancels_drift_that_a_single_verifier_timing_does_not(monkeypatch):
  clock = DriftingClock(drift=1.05)  # 5% slower at every call
  monkeypatch.setattr(latency.time, "perf_counter", clock.perf_counter)
  inputs = [np.zeros((1, 8), np.int32)] * 6 + [np.zeros((1, 16), np.int32)] * 6
  timed = latency.paired_times(clock.decoder("m", 2.0), clock.decoder("v", 1.0), inputs,
                               repeats=4)
  # The true ratio is 2; pairing and alternating the order keep it within 3%
  # although the machine got 1.05^100 ≈ 130 times slower during the run.
  assert timed.summary()["relative_latency"] == pytest.approx(2.0, rel=0.03)
  # Compile runs: one untimed call of each per new shape, before any timing.
  assert clock.calls[:2] == [("m", (1, 8)), ("v", (1, 8))]
  assert clock.calls[2 + 8 * 6:2 + 8 * 6 + 2] == [("m", (1, 16)), ("v", (1, 16))]
  # The garbage collector is off during the timing, and back on afterwards.
  assert not any(clock.gc_enabled) and gc.isenabled()
  # Order alternates: m v, v m, m v, v m.
  assert [c[0] for c in clock.calls[2:10]] == list("mvvmmvvm")
  # What the old protocol did: the verifier timed first, the method later.
  clock2 = DriftingClock(drift=1.05)
  monkeypatch.setattr(latency.time, "perf_counter", clock2.perf_counter)
  v_first = latency.paired_times(clock2.decoder("v", 1.0), None, inputs, repeats=4)
  m_later = latency.paired_times(clock2.decoder("m", 2.0), None, inputs, repeats=4)
  assert m_later.method_s.sum() / v_first.method_s.sum() > 2.0 * 1.5


def test_the_verifier_paired_with_itself_and_the_record_fields(monkeypatch):
  clock = DriftingClock(drift=1.0)
  monkeypatch.setattr(latency.time, "perf_counter", clock.perf_counter)
  inputs = [np.zeros((1, 8), np.int32)] * 3
  timed = latency.paired_times(clock.decoder("v", 0.5), None, inputs, repeats=2)
  s = timed.summary()
  assert s["relative_latency"] == 1.0 and s["relative_latency_interval"] == [1.0, 1.0]
  assert s["latency_s"] == s["verifier_latency_s"] == 0.5
  assert s["latency_examples_s"] == {"method": [0.5] * 3, "verifier": [0.5] * 3}
  assert len(clock.calls) == 1 + 3 * 2 * 2  # one untimed, then 2 repeats × 2 sides
  with pytest.raises(ValueError, match="repeats"):
    latency.paired_times(clock.decoder("v", 1.0), None, inputs, repeats=0)
  with pytest.raises(ValueError, match="no inputs"):
    latency.paired_times(clock.decoder("v", 1.0), None, [], repeats=1)


def test_probes_are_timed_once_per_example_after_its_pairs(monkeypatch):
  """Step-cost programs ride along: each probe once per example, after that
  example's repeats, its first call untimed; each timing is its own cost."""
  clock = DriftingClock(drift=1.0)
  monkeypatch.setattr(latency.time, "perf_counter", clock.perf_counter)

  def probe(name, base):
    def run():
      clock.calls.append((name, None))
      clock.now += base
    return run

  inputs = [np.zeros((1, 8), np.int32)] * 3
  probes = [{"a": probe("a", 0.25), "b": probe("b", 0.125)}] * 2 + [{"a": probe("a", 0.25)}]
  timed = latency.paired_times(clock.decoder("m", 2.0), clock.decoder("v", 1.0), inputs,
                               repeats=2, probes=probes)
  assert timed.probe_s == {"a": [0.25] * 3, "b": [0.125] * 2}
  names = [c[0] for c in clock.calls]
  # m, v (compile); m v v m; a (compile) a, b (compile) b; m v v m; a b; m v v m; a.
  assert names == list("mvmvvmaabbmvvmabmvvma")
  np.testing.assert_allclose(timed.method_s, 2.0)   # the probes are not in the pairs
  with pytest.raises(ValueError, match="one mapping per input"):
    latency.paired_times(clock.decoder("v", 1.0), None, inputs, probes=probes[:2])


def test_time_point_prices_each_bucket_from_the_median_of_its_own_step_programs(
    monkeypatch):
  """The sweep's step costs: each example's bucket's programs timed after its
  pairs; per bucket the median of each program, a step (loop − set-up) / inner.
  The loop-cost programs: after every example, the median of each."""
  from spec_cascade_jax.evaluation import step_costs
  clock = DriftingClock(drift=1.0)
  monkeypatch.setattr(latency.time, "perf_counter", clock.perf_counter)
  model = testing.random_bigram(jax.random.PRNGKey(0), 8)
  inner = 4
  # Seconds per call of each program, in turn (the first call, compiling, untimed).
  plan = {4: {("verifier", 0): [9, 1.0, 1.0, 5.0], ("verifier", 1): [9, 3.0, 9.0, 5.0],
              ("verifier", 2): [9, 5.0, 5.0, 7.0]},
          8: {("verifier", 0): [9, 2.0], ("verifier", 1): [9, 6.0],
              ("verifier", 2): [9, 10.0]}}
  programs = {}
  for n, times in plan.items():
    fns, costs = step_costs.programs(None, model, input_length=n, max_new_tokens=4,
                                     num_draft_tokens=1, inner=inner)
    assert set(fns) == set(times)

    def fake(seq):
      def run():
        clock.now += seq.pop(0)
      return run
    programs[n] = ({key: fake(list(t)) for key, t in times.items()}, costs)
  counts = {}
  ids = [[3, 4, 1], [5, 1], [3, 4, 5, 6, 7, 1], [4, 1]]   # buckets 4, 4, 8, 4
  # The loop-cost programs (evaluation/loop_costs.py) are timed after every
  # example's pairs, whatever its bucket; their costs see each one's median.
  loop_times = {("method", "short"): [9, 1.0, 2.0, 4.0, 3.0],
                ("method", "long"): [9, 5.0, 6.0, 8.0, 1.0]}
  loop_programs = ({key: fake(list(t)) for key, t in loop_times.items()}, lambda sec: sec)
  infer.time_point(None, model, ids, grids.Point("Verifier", "verifier"), 4, (4, 8), 1,
                   stats_out=counts, step_programs=programs, loop_programs=loop_programs)
  assert counts["loop_costs"] == {("method", "short"): 2.5, ("method", "long"): 5.5}
  got = counts["step_costs"]
  assert sorted(got) == [4, 8]
  # Bucket 4: set-up median 1, loops 5 and 5 → steps 1 and 1; bucket 8: 2, (6−2)/4, (10−2)/4.
  assert got[4].encode_verifier == 1.0 and got[4].verifier_chunk == {1: 1.0, 2: 1.0}
  assert got[8].encode_verifier == 2.0 and got[8].verifier_chunk == {1: 1.0, 2: 2.0}
  assert got[4].drafter_step == got[4].encode_drafter == 0.0   # no drafter: 0
  with pytest.raises(ValueError, match=r"length buckets \[8\]"):
    infer.time_point(None, model, ids, grids.Point("Verifier", "verifier"), 4, (4, 8), 1,
                     step_programs={4: programs[4]})


def test_bootstrap_interval_covers_and_narrows():
  """Over many simulated runs of 24 examples the 95% interval holds the true
  ratio about 95% of the time; with 16× the examples it is ~4× narrower."""
  rs = np.random.RandomState(0)
  truth = 0.6 * np.exp(0.02)   # E[Σm] / E[Σv] for m = 0.6·v·lognormal(0, 0.2)

  def run(n, seed):
    v = rs.uniform(0.5, 1.5, n)
    return latency.ratio_interval(0.6 * v * rs.lognormal(0.0, 0.2, n), v, resamples=500,
                                  seed=seed)

  runs = [run(24, s) for s in range(200)]
  covered = np.mean([lo < truth < hi for _, lo, hi in runs])
  assert 0.88 <= covered <= 0.99, covered
  assert all(lo < r < hi for r, lo, hi in runs)
  width = np.median([hi - lo for _, lo, hi in runs])
  wide = np.median([hi - lo for _, lo, hi in (run(384, s) for s in range(20))])
  assert 0.15 < wide / width < 0.4, (width, wide)
  with pytest.raises(ValueError, match="equal-length"):
    latency.ratio_interval(np.ones(3), np.ones(4))


# ---------------------------------------------------------------------------
# A sweep interrupted while it times, with real decoding.
# ---------------------------------------------------------------------------


def _task():
  ids = [[3 + i % 5, 4, 1] for i in range(8)]

  def sampled(targets, predictions):
    # Depends on every sampled token: equal numbers mean equal samples.
    return {"tokens": float(np.mean([sum(map(int, p.split())) for p in predictions])),
            "length": float(np.mean([len(p.split()) for p in predictions]))}

  return infer.TaskData("toy", "validation", ids, [""] * 8, ["3 4"] * 8,
                        lambda toks: " ".join(str(t) for t in toks), [sampled])


@pytest.mark.slow
def test_a_sweep_interrupted_mid_timing_resumes_to_the_uninterrupted_numbers(tmp_path,
                                                                            monkeypatch):
  drafter = testing.random_bigram(jax.random.PRNGKey(1), 12, sharpness=2.0)
  verifier = testing.random_bigram(jax.random.PRNGKey(2), 12, sharpness=2.0)
  monkeypatch.setattr(infer, "load_task", lambda *a, **k: _task())
  monkeypatch.setattr(infer, "check_task", lambda *a, **k: None)   # "toy" is no real task
  kw = dict(task="toy", grid="small", temperatures=(1.0,), seeds=(3,), batch_size=4,
            max_new_tokens=6, buckets=(4,), num_latency_examples=2, repeats=1,
            make_plots=False)
  whole = sweep.run_sweep(drafter, verifier, output_dir=str(tmp_path / "whole"), **kw)

  n_points = len(grids.build_points(grids.SMALL, temperatures=(1.0,), seeds=(3,)))
  real_time_example, calls = infer.PointTimer.time_example, []

  def killed_timing_the_second_example(self, i):
    calls.append(i)
    if len(calls) == n_points + 2:   # the first example's timings are saved
      raise KeyboardInterrupt
    return real_time_example(self, i)

  monkeypatch.setattr(infer.PointTimer, "time_example", killed_timing_the_second_example)
  cut = str(tmp_path / "cut")
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(drafter, verifier, output_dir=cut, **kw)
  assert sweep.load_results(cut) == []
  saved = sweep.ResultsFile(os.path.join(cut, sweep.PROGRESS_FILE)).read()
  assert [r["kind"] for r in saved] == ["sweep"] + ["quality"] * n_points + ["timing"]
  monkeypatch.setattr(infer.PointTimer, "time_example", real_time_example)
  resumed = sweep.run_sweep(drafter, verifier, output_dir=cut, **kw)
  points = {r["key"]: r for r in sweep.load_results(cut)}
  assert len(points) == len(grids.build_points(grids.SMALL, temperatures=(1.0,), seeds=(3,)))
  for r in sweep.load_results(os.path.join(tmp_path, "whole")):
    assert points[r["key"]]["quality"] == r["quality"], r["label"]
    assert points[r["key"]]["cost"] == r["cost"], r["label"]
  assert resumed["tables"][0]["rows"] and whole["metric"] == resumed["metric"] == "tokens"
  # Sampling made the methods differ: the comparison is not between constants.
  assert len({r["quality"]["tokens"] for r in points.values()}) > 2
  # Every point carries the cost model's prediction, from step costs timed
  # among its own pairs: every verifier width 1..γ+1 of its length bucket.
  for r in points.values():
    assert r["predicted_relative_latency"] > 0 and r["modelled_latency_s"] > 0, r["label"]
    assert list(r["step_costs"]) == ["4"]
    widths = [str(k) for k in range(1, r["num_draft_tokens"] + 2)]
    assert list(r["step_costs"]["4"]["verifier_chunk"]) == widths
    assert list(r["step_costs"]["4"]["round_cost"]) == widths
