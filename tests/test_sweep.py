"""Sweep: resume after an interruption, the Table-2 summary, infer/eval plumbing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spec_cascade_jax import testing
from spec_cascade_jax.evaluation import (demo, grids, infer, loop_costs, step_costs,
                                         summary, sweep)
from spec_cascade_jax.evaluation.cost_model import LoopCost, StepCosts


# ---------------------------------------------------------------------------
# A fake decoder for the resume tests: deterministic, instant, no compiling.
# ---------------------------------------------------------------------------


def _fake_task(n=6):
  ids = [[5 + i, 6, 1] for i in range(n)]

  def exact(targets, predictions):
    return {"exact": 100.0 * np.mean([t == p for t, p in zip(targets, predictions)])}

  # The first two inputs equal their targets: copying scores 2 of 6.
  return infer.TaskData("fake", "validation", ids,
                        [str(5 + i) if i < 2 else f"in{i}" for i in range(n)],
                        [str(5 + i) for i in range(n)],
                        lambda toks: str(toks[0]), [exact])


REAL_TIMER = infer.PointTimer


class FakeBackend:
  """Counts decodes and timed examples; the machine's speed (`slowdown`)
  scales every timing. `stop_decoding_at` / `stop_timing_at`: raise Interrupt
  at that decode / example timing (counting from 1), like a kill."""

  def __init__(self, monkeypatch, slowdown, stop_decoding_at=None, stop_timing_at=None):
    self.decoded, self.timed = [], []
    self.slowdown = slowdown
    self.stop_decoding_at, self.stop_timing_at = stop_decoding_at, stop_timing_at
    monkeypatch.setattr(infer, "load_task", lambda *a, **k: _fake_task())
    monkeypatch.setattr(infer, "check_task", lambda *a, **k: None)   # "fake" is no real task
    monkeypatch.setattr(infer, "resolve_model", lambda m: m)
    monkeypatch.setattr(infer, "decode_batched", self.decode)
    monkeypatch.setattr(infer, "PointTimer", self.timer)
    monkeypatch.setattr(step_costs, "programs", self.programs)
    monkeypatch.setattr(loop_costs, "programs", self.loop_programs)

  def programs(self, q, p, *, input_length, **kwargs):
    """No programs to time; their costs: encoders 1 (drafter) and 2
    (verifier), drafter step 0.5, chunks c(1) 1, c(6) 3."""
    return {}, lambda seconds: StepCosts(1.0, 2.0, 0.5, {1: 1.0, 6: 3.0})

  def loop_programs(self, sides, like, seed=0):
    """No free decodes; each side's loop costs 0.5 a decode and 0.25 an iteration."""
    assert set(sides) == {"method", "verifier"} and sides["verifier"][0] == "verifier"
    return {}, lambda seconds: {side: LoopCost(0.5, 0.25) for side in sides}

  def decode(self, q, p, input_ids, point, *args, **kwargs):
    self.decoded.append(point.key)
    if len(self.decoded) == self.stop_decoding_at:
      raise Interrupt()
    n = len(input_ids)
    # α > 0.5 "breaks" every other prediction: quality falls with α.
    toks = [[x[0] + (1 if point.alpha > 0.5 and i % 2 else 0), 1]
            for i, x in enumerate(input_ids)]
    stats = {"rounds": np.full(n, 4), "drafter_steps": np.full(n, 8),
             "draft_tokens": np.full(n, 10), "accepted": np.full(n, 6),
             "deferrals": np.full(n, 1), "sequential_verifier_calls": np.zeros(n, int),
             "num_tokens": np.full(n, 2)}
    return toks, stats

  def timer(self, q, p, input_ids, point, max_new_tokens, buckets, repeats, step_programs,
            loop_programs):
    """The real PointTimer (its `finish` included) with this fake's timings:
    the verifier takes 1 s an example, the point 0.5 + α (the verifier
    itself 1), all times the machine's slowdown. The timed decodes' counts: 2
    tokens an example, in 1 round of 6 drafter steps."""
    backend = self
    timer = REAL_TIMER.__new__(REAL_TIMER)
    timer.inputs, timer.lengths = list(input_ids), [32] * len(input_ids)
    timer.step_programs, timer.loop_programs = step_programs, loop_programs

    def time_example(i):
      backend.timed.append((point.key, i))
      if len(backend.timed) == backend.stop_timing_at:
        raise Interrupt()
      counts = {"num_tokens": 2, "rounds": 1, "drafter_steps": 6,
                "sequential_verifier_calls": 0}
      own = 1.0 if point.method == "verifier" else 0.5 + point.alpha
      return {"method_s": own * backend.slowdown, "verifier_s": backend.slowdown,
              "probes": [], "stats": {"method": counts, "verifier": dict(counts, rounds=2)},
              "seconds": 0.0}
    timer.time_example = time_example
    return timer


class Interrupt(Exception):
  pass


def _run(tmp_path, **kw):
  return sweep.run_sweep("drafter", "verifier", output_dir=str(tmp_path), task="fake",
                         grid="small", make_plots=False, **kw)


def test_resume_after_interruption_loses_no_finished_work(tmp_path, monkeypatch):
  """Killed while decoding for quality, then while timing, then while
  writing the records: each rerun redoes only what was not saved, and the
  points' latencies are timed example by example, every point in turn."""
  points = grids.build_points(grids.SMALL)
  assert len(points) == 5
  path = os.path.join(tmp_path, sweep.RESULTS_FILE)
  # 1. Killed decoding the fourth point's quality: three points' quality is kept.
  first = FakeBackend(monkeypatch, slowdown=1.0, stop_decoding_at=4)
  with pytest.raises(Interrupt):
    _run(tmp_path)
  assert first.timed == [] and sweep.load_results(path) == []
  # 2. Killed timing the 4th example (of 6): the first three examples are kept.
  second = FakeBackend(monkeypatch, slowdown=1.0, stop_timing_at=3 * 5 + 2)
  with pytest.raises(Interrupt):
    _run(tmp_path)
  assert second.decoded == [p.key for p in points[3:]]
  assert sweep.load_results(path) == []
  # Every example times every point, the order turning by one point an example.
  assert second.timed[:15] == [(p.key, i) for i in range(3)
                               for p in points[i:] + points[:i]]
  # A write cut short by a kill leaves a partial last line: it must be ignored.
  with open(os.path.join(tmp_path, sweep.PROGRESS_FILE), "a") as f:
    f.write('{"kind": "timing", "example": 3, "entries": {"partial')
  # 3. A slower (or busier) machine now, killed after three records are written.
  seen = []

  def stop_after_three(record):
    seen.append(record["key"])
    if len(seen) == 3:
      raise Interrupt()

  third = FakeBackend(monkeypatch, slowdown=2.0)
  with pytest.raises(Interrupt):
    _run(tmp_path, on_point=stop_after_three)
  assert third.decoded == []
  assert third.timed == [(p.key, i) for i in range(3, 6)
                         for p in points[i % 5:] + points[:i % 5]]
  assert [r["key"] for r in sweep.load_results(path)] == [p.key for p in points[:3]]
  # 4. The last two records come from the saved work alone.
  fourth = FakeBackend(monkeypatch, slowdown=3.0)
  out = _run(tmp_path)
  assert fourth.decoded == [] and fourth.timed == []
  records = sweep.load_results(path)
  keys = [r["key"] for r in records]
  assert keys == [p.key for p in points]
  assert len({r["run_id"] for r in records}) == 2
  # Each example's pair is its own ratio: the slower machine of the third
  # run changes the seconds (three examples at 1 s, three at 2 s), not the
  # ratios.
  for r in records:
    want = 1.0 if r["method"] == "verifier" else 0.5 + r["alpha"]
    np.testing.assert_allclose(r["relative_latency"], want)
    np.testing.assert_allclose(r["relative_latency_interval"], [want, want])
    np.testing.assert_allclose(r["verifier_latency_s"], 1.5)
    assert r["num_latency_examples"] == 6 and r["quality"]["exact"] >= 50.0
  # The cost model's prediction from the fake step costs, loop costs and
  # counts: the verifier 2 + 2·1 = 4 an example and its loop 0.5 + 2 tokens
  # · 0.25 = 1; the drafter 1 + 2·0.5 = 2 and 1; a speculative method
  # 1 + 2 + 6·0.5 + c(6) = 9 and 0.5 + 1 round · 0.25 = 0.75.
  want = {"verifier": 1.0, "drafter": 0.6, "speculative": 1.95, "spec_cascade": 1.95}
  assert {r["method"]: r["predicted_relative_latency"] for r in records} == pytest.approx(want)
  assert {r["method"]: r["modelled_latency_s"] for r in records} == pytest.approx(
      {m: 5.0 * x for m, x in want.items()})
  assert all(r["verifier_modelled_latency_s"] == 5.0 for r in records)
  assert all(r["step_costs"] == {"32": StepCosts(1.0, 2.0, 0.5, {1: 1.0, 6: 3.0}).to_dict()}
             for r in records)
  assert all(r["loop_costs"] == {s: {"fixed": 0.5, "per_iteration": 0.25}
                                 for s in ("method", "verifier")} for r in records)
  assert all(r["machine"]["cpus"] for r in records)
  assert out["metric"] == "exact"

  # A fifth run has nothing left to do.
  fifth = FakeBackend(monkeypatch, slowdown=1.0)
  _run(tmp_path)
  assert fifth.decoded == [] and fifth.timed == []


def test_a_sweep_without_latency_examples_is_refused_before_any_work(tmp_path, monkeypatch):
  backend = FakeBackend(monkeypatch, slowdown=1.0)
  for bad in ({"num_latency_examples": 0}, {"repeats": 0}):
    with pytest.raises(ValueError, match="num_latency_examples and repeats must be >= 1"):
      _run(tmp_path, **bad)
  assert backend.decoded == [] and not os.listdir(tmp_path)


def test_rerun_with_other_settings_is_refused(tmp_path, monkeypatch):
  FakeBackend(monkeypatch, slowdown=1.0)
  _run(tmp_path, max_new_tokens=8)
  with pytest.raises(ValueError, match="max_new_tokens"):
    _run(tmp_path, max_new_tokens=16)


def test_sweep_writes_summary_and_plots(tmp_path, monkeypatch):
  FakeBackend(monkeypatch, slowdown=1.0)
  sweep.run_sweep("d", "v", output_dir=str(tmp_path), task="fake", grid="small")
  for name in ("summary.md", "summary.json", "tradeoff.png", "deferral.png"):
    assert os.path.getsize(os.path.join(tmp_path, name)) > 100, name
  # The copy-the-input baseline is scored once, kept on resume, and shown.
  again = sweep.run_sweep("d", "v", output_dir=str(tmp_path), task="fake", grid="small",
                          make_plots=False)
  assert again["tables"][0]["copy_quality"] == pytest.approx(100.0 / 3)
  kinds = [r["kind"] for r in sweep.ResultsFile(str(tmp_path / "results.jsonl")).read()]
  assert kinds.count("copy_baseline") == 1
  with open(os.path.join(tmp_path, "summary.md"), encoding="utf-8") as f:
    text = f.read()
  assert "copying the input unchanged: 33.33" in text
  # The cost model's prediction closes each row, beside the measured latency.
  assert "| predicted latency |" in text and "| 0.600 |\n" in text and "| 1.950 |\n" in text
  with open(os.path.join(tmp_path, "tradeoff.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# The Table-2 summary on a hand-made results file.
# ---------------------------------------------------------------------------


def _rec(curve, method, alpha, quality, latency, temperature=0.0, seed=0, accepted=None,
         drafted=None, deferral=None, tokens=20.0):
  rej = None if drafted is None else 1.0 - accepted / drafted
  return {"kind": "point", "curve": curve, "method": method, "rule": "", "alpha": alpha,
          "num_draft_tokens": 5, "temperature": temperature, "seed": seed,
          "quality": {"bleu": quality, "chrf": 50.0}, "relative_latency": latency,
          "relative_latency_interval": [latency - 0.05, latency + 0.05],
          "num_latency_examples": 24,
          "cost": {"rejection_rate": rej, "deferral_rate": deferral, "mean_tokens": tokens,
                   "verifier_calls_per_token": 0.5, "drafter_steps_per_token": 2.5}}


SYNTHETIC = [
    _rec("Verifier", "verifier", 0.0, 30.0, 1.0),
    _rec("Drafter", "drafter", 0.0, 20.0, 0.3),
    _rec("SpecDecode", "speculative", 0.0, 30.0, 0.7, accepted=60, drafted=100),
    # SpecCascade: α=0.1 reaches 30.5 at 0.8; α=0.3 reaches 30.0 at 0.6 (the least);
    # α=0.6 is faster but below the verifier.
    _rec("SpecCascade[token_v3]", "spec_cascade", 0.1, 30.5, 0.8, accepted=70, drafted=100,
         deferral=0.2, tokens=15.0),
    _rec("SpecCascade[token_v3]", "spec_cascade", 0.3, 30.0, 0.6, accepted=80, drafted=100),
    _rec("SpecCascade[token_v3]", "spec_cascade", 0.6, 25.0, 0.4, accepted=90, drafted=100),
    # TokenCascade: never reaches 30; best within latency 1 is 29 at α=0.5 (the
    # α=0.2 point is better but slower than the verifier).
    _rec("TokenCascade[chow]", "token_cascade", 0.2, 29.5, 1.4, deferral=0.4),
    _rec("TokenCascade[chow]", "token_cascade", 0.5, 29.0, 0.9, deferral=0.25),
    # Temperature 1 with two seeds: means 24 / 0.95 and 25 / 0.75.
    _rec("Verifier", "verifier", 0.0, 24.0, 1.1, temperature=1.0, seed=0),
    _rec("Verifier", "verifier", 0.0, 24.0, 0.9, temperature=1.0, seed=1),
    _rec("SpecCascade[token_v3]", "spec_cascade", 0.3, 26.0, 0.7, 1.0, 0, 50, 100),
    _rec("SpecCascade[token_v3]", "spec_cascade", 0.3, 24.0, 0.8, 1.0, 1, 70, 100),
]


def test_summary_matches_hand_computed_table():
  s = summary.summarize(SYNTHETIC)
  assert s["metric"] == "bleu"
  t0, t1 = s["tables"]
  assert t0["temperature"] == 0.0 and t0["verifier_quality"] == 30.0
  assert t0["drafter_quality"] == 20.0
  rows = {r["curve"]: r for r in t0["rows"]}
  spec = rows["SpecCascade[token_v3]"]
  assert spec["latency_at_verifier_quality"] == 0.6 and spec["matched_alpha"] == 0.3
  np.testing.assert_allclose(spec["speedup_at_verifier_quality"], 1 / 0.6)
  assert spec["best_quality_within_verifier_latency"] == 30.5 and spec["best_alpha"] == 0.1
  np.testing.assert_allclose(spec["best_rejection_rate"], 0.3)
  tok = rows["TokenCascade[chow]"]
  assert tok["latency_at_verifier_quality"] is None
  assert tok["best_quality_within_verifier_latency"] == 29.0 and tok["best_alpha"] == 0.5
  assert tok["best_rejection_rate"] is None and tok["best_deferral_rate"] == 0.25
  sd = rows["SpecDecode"]
  assert sd["latency_at_verifier_quality"] == 0.7
  np.testing.assert_allclose(sd["best_rejection_rate"], 0.4)
  assert rows["Drafter"]["latency_at_verifier_quality"] is None
  assert rows["Verifier"]["latency_at_verifier_quality"] == 1.0

  # Temperature 1: seeds averaged, sample standard deviation as the spread.
  assert t1["num_seeds"] == 2 and t1["verifier_quality"] == 24.0
  assert t1["verifier_quality_std"] == 0.0
  spec1 = {r["curve"]: r for r in t1["rows"]}["SpecCascade[token_v3]"]
  np.testing.assert_allclose(spec1["latency_at_verifier_quality"], 0.75)
  np.testing.assert_allclose(spec1["best_quality"], 25.0)
  np.testing.assert_allclose(spec1["best_quality_std"], np.std([26.0, 24.0], ddof=1))
  np.testing.assert_allclose(spec1["best_rejection_rate"], 0.4)

  # The point shown: the best within latency 1, else the fastest (TokenCascade
  # has one within; a curve whose points are all slower shows its fastest).
  assert spec["shown_alpha"] == 0.1 and spec["shown_relative_length"] == 0.75
  np.testing.assert_allclose(spec["shown_relative_latency_interval"], [0.75, 0.85])
  slow = summary.summarize(SYNTHETIC[:1] + [_rec("Slow", "lossy", 0.2, 30.0, 1.3),
                                            _rec("Slow", "lossy", 0.5, 29.0, 1.2)])
  slow_row = {r["curve"]: r for r in slow["tables"][0]["rows"]}["Slow"]
  assert slow_row["best_quality"] is None and slow_row["shown_relative_latency"] == 1.2
  assert slow_row["shown_alpha"] == 0.5

  md = summary.format_markdown(s)
  assert ("| SpecCascade[token_v3] | 1.67× (α=0.3) | 0.1 | 30.50 | 0.800 [0.750, 0.850] "
          "| 0.75 | 0.500 | 2.50 | 0.200 |") in md
  assert "| TokenCascade[chow] | not reached | 0.5 |" in md
  # Methods without α show none.
  assert "| SpecDecode | 1.43× | — | 30.00 | 0.700 [0.650, 0.750] | 1.00 | 0.500 | 2.50 | — |" in md
  assert "| Verifier | 1.00× | — |" in md
  assert "mean ± sd over 2 seeds" in md and "25.00 ± 1.41" in md
  # The legend under each table names what every column is.
  for words in ("**speed-up at verifier bleu**", "**length**", "each of the 24 examples",
                "**deferral rate**", "— for methods without a rule"):
    assert md.count(words) == 2, words


def test_the_verifiers_own_speed_up_is_one_whatever_its_timing_noise():
  """The verifier paired with itself measures timing noise (here 0.98), not a
  speed-up: its row says 1.00x, its latency column shows the noise."""
  noisy = [dict(r, relative_latency=0.98) if r["method"] == "verifier" else r
           for r in SYNTHETIC]
  rows = {r["curve"]: r for r in summary.summarize(noisy)["tables"][0]["rows"]}
  assert rows["Verifier"]["speedup_at_verifier_quality"] == 1.0
  assert rows["Verifier"]["latency_at_verifier_quality"] == 0.98
  assert rows["SpecDecode"]["speedup_at_verifier_quality"] == pytest.approx(1 / 0.7)
  assert "| Verifier | 1.00× |" in summary.format_markdown(summary.summarize(noisy))


def test_summary_reports_the_cost_models_time_and_choices():
  """Verifier-only measured against modelled; per curve the model's pick among
  the points at the verifier's quality; lossless SD's γ at its acceptance."""
  costs = StepCosts(0.0, 0.0, 0.1, {1: 1.0, 6: 1.0}).to_dict()   # chunks cost one step

  def rec(r, predicted, **kw):
    return dict(r, predicted_relative_latency=predicted, **kw)

  recs = [rec(SYNTHETIC[0], 1.0, latency_s=0.022, modelled_latency_s=0.020),
          rec(SYNTHETIC[2], 0.75, step_costs={"32": costs}),
          # SpecCascade: measured fastest at the verifier's quality is α = 0.3
          # (0.6); the model predicts α = 0.1 faster (0.65 < 0.7); α = 0.6 is
          # predicted fastest of all but misses the verifier's quality.
          rec(SYNTHETIC[3], 0.65), rec(SYNTHETIC[4], 0.7), rec(SYNTHETIC[5], 0.3)]
  tab = summary.summarize(recs)["tables"][0]
  assert tab["verifier_time"] == {"measured_s": 0.022, "modelled_s": 0.020,
                                  "ratio": pytest.approx(1.1)}
  rows = {r["curve"]: r for r in tab["rows"]}
  spec = rows["SpecCascade[token_v3]"]
  assert spec["matched_alpha"] == 0.3 and spec["chosen_alpha"] == 0.1
  assert spec["chosen_relative_latency"] == 0.8
  # Acceptance 0.6, c_d 0.1, c(k) 1: E[tokens]/((γ+1)·0.1 + 1) is 1.333, 1.508,
  # 1.554, 1.537, 1.490 for γ = 1..5.
  g = tab["num_draft_tokens_choice"]
  assert g["best"] == 3 and g["num_draft_tokens"] == 5
  np.testing.assert_allclose([g["speedup"][k] for k in range(1, 6)],
                             [1.6 / 1.2, 1.96 / 1.3, 2.176 / 1.4, 2.3056 / 1.5, 2.38336 / 1.6])
  md = summary.format_markdown(summary.summarize(recs))
  assert "Verifier-only decoding: 22.00 ms per example measured, 20.00 ms modelled" in md
  assert "1.100× the modelled time" in md
  assert "| SpecCascade[token_v3] | α=0.3 | 0.600 | α=0.1 | 0.650 | 0.800 |" in md
  assert "γ = 3 (run with γ = 5)" in md
  # Records without the model's fields (older runs) get none of these lines.
  assert "cost model's choice" not in summary.format_markdown(summary.summarize(SYNTHETIC))


def test_the_summary_prices_every_point_at_the_runs_median_step_costs():
  """Points that kept their counts are predicted again at the median over the
  points of each step cost; their own prediction is kept beside it."""
  def costs(c1):   # encoders 1 and 2, drafter step 0.5, c(k) = c1 for every k
    return StepCosts(1.0, 2.0, 0.5, {1: c1, 6: c1}).to_dict()

  counts = {"method": {"num_tokens": [2], "rounds": [1], "drafter_steps": [6]},
            "verifier": {"num_tokens": [2], "rounds": [2]}}
  recs = [dict(SYNTHETIC[0], step_costs={"32": costs(1.0)}, predicted_relative_latency=1.0,
               counts={"method": counts["verifier"], "verifier": counts["verifier"]},
               example_buckets=[32]),
          dict(SYNTHETIC[2], step_costs={"32": costs(2.0)}, predicted_relative_latency=9.0,
               counts=counts, example_buckets=[32]),
          dict(SYNTHETIC[1], step_costs={"32": costs(4.0)}, predicted_relative_latency=0.1)]
  pooled = summary.pooled_costs(recs)["32"]
  assert pooled.verifier_step == 2.0 and pooled.encode_verifier == 2.0
  out = {r["curve"]: r for r in summary.pooled_predictions(recs)}
  # At c = 2: the verifier 2 + 2·2 = 6; SpecDecode 1 + 2 + 6·0.5 + c(6) = 8.
  assert out["SpecDecode"]["predicted_relative_latency"] == pytest.approx(8 / 6)
  # Each side's loop cost stays the point's own: SpecDecode's 1 round at
  # 0.5 + 1·1 = 1.5, the verifier's 2 tokens at 1 + 2·0.5 = 2.
  loops = {"method": {"fixed": 0.5, "per_iteration": 1.0},
           "verifier": {"fixed": 1.0, "per_iteration": 0.5}}
  own = summary.pooled_predictions([dict(recs[1], loop_costs=loops)],
                                   summary.pooled_costs(recs))[0]
  assert own["predicted_relative_latency"] == pytest.approx((8 + 1.5) / (6 + 2))
  assert out["SpecDecode"]["point_predicted_relative_latency"] == 9.0
  assert out["Verifier"]["predicted_relative_latency"] == 1.0
  assert out["Drafter"]["predicted_relative_latency"] == 0.1   # no counts: its own
  rows = {r["curve"]: r for r in summary.summarize(recs)["points"]}
  assert rows["SpecDecode"]["predicted_relative_latency"] == pytest.approx(8 / 6)


def test_summary_errors_are_clear():
  with pytest.raises(ValueError, match="no verifier point"):
    summary.summarize([r for r in SYNTHETIC if r["method"] != "verifier"])
  with pytest.raises(ValueError, match="metric 'rouge2' not in the results"):
    summary.summarize(SYNTHETIC, "rouge2")
  with pytest.raises(ValueError, match="run the sweep first"):
    summary.summarize([])


def test_grids():
  pts = grids.build_points(grids.DEMO, temperatures=(0.0, 1.0), seeds=(0, 1))
  assert pts[0].method == "verifier"
  n0 = sum((1 if c.method in grids.NO_ALPHA_METHODS else len(c.alphas))
           * max(len(c.draft_thresholds), 1) for c in grids.DEMO)
  assert len(pts) == 3 * n0  # T=0 once, T=1 for two seeds
  assert len({p.key for p in pts}) == len(pts)
  assert grids.Point("X", "lossy", alpha=0.1 + 0.2).key == grids.Point("X", "lossy",
                                                                       alpha=0.3).key
  sel = grids.select_curves("paper", ["LossySD"], {"LossySD": [0.5]})
  assert [c.name for c in sel] == ["Verifier", "LossySD"] and sel[1].alphas == (0.5,)
  with pytest.raises(ValueError, match="unknown curve"):
    grids.select_curves("paper", ["Nope"])
  with pytest.raises(ValueError, match="has no α"):
    grids.select_curves("paper", alphas={"SpecDecode": [0.1]})


def test_draft_policy_curves_cross_thresholds_with_alpha():
  """A +confidence curve sweeps (τ, α) jointly; its points decode with the
  policy; points without a policy keep the keys of older results files."""
  sel = grids.select_curves("paper", ["SpecCascade[token_v3]+confidence"],
                            {"SpecCascade[token_v3]+confidence": [0.1, 0.3]},
                            {"SpecCascade[token_v3]+confidence": [0.2, 0.5, 0.8]})
  pts = [p for p in grids.build_points(sel) if p.method != "verifier"]
  assert sorted((p.alpha, p.draft_threshold) for p in pts) == [
      (a, t) for a in (0.1, 0.3) for t in (0.2, 0.5, 0.8)]
  kw = infer.decode_kwargs(pts[0], 16)
  assert kw["draft_policy"] == "confidence" and kw["draft_threshold"] == pts[0].draft_threshold
  assert "τ=0.2" in pts[0].label
  plain = grids.Point("SpecDecode", "speculative")
  assert "draft_policy" not in plain.key and "draft_threshold" not in plain.key
  assert "draft_policy" not in infer.decode_kwargs(plain, 16)
  with pytest.raises(ValueError, match="has no threshold draft policy"):
    grids.select_curves("paper", draft_thresholds={"SpecDecode+heuristic": [0.5]})
  with pytest.raises(ValueError, match="takes no draft policy"):
    grids.Curve("X", "token_cascade", "chow", draft_policy="heuristic")
  with pytest.raises(ValueError, match="draft_thresholds go with"):
    grids.Curve("X", "speculative", draft_policy="confidence")
  # infer/eval jobs: the settings generate would reject raise before any work.
  assert infer.job_point("j", "speculative", None, 0.0, 5, 0.0, 0,
                         "confidence").draft_threshold == 0.4
  with pytest.raises(ValueError, match="draft_threshold is a setting of the draft policies"):
    infer.job_point("j", "speculative", None, 0.0, 5, 0.0, 0, None, 0.5)


# ---------------------------------------------------------------------------
# Real decoding, small: batching/padding, cost statistics, infer's JSONL.
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_decode_batched_is_independent_of_batching_and_sd_equals_verifier():
  import jax
  q = testing.random_bigram(jax.random.PRNGKey(1), 16, sharpness=2.0)
  p = testing.random_bigram(jax.random.PRNGKey(2), 16, sharpness=2.0)
  ids = [[3, 1], [4, 5, 1], [2, 7, 9, 1], [6, 1], [8, 8, 1]]
  ver = grids.Point("Verifier", "verifier")
  sd = grids.Point("SpecDecode", "speculative", num_draft_tokens=3)
  v_tok, v_stats = infer.decode_batched(q, p, ids, ver, batch_size=4, max_new_tokens=8,
                                        buckets=(4,))
  s_tok, s_stats = infer.decode_batched(q, p, ids, sd, batch_size=4, max_new_tokens=8,
                                        buckets=(4,))
  s_tok2, s_stats2 = infer.decode_batched(q, p, ids, sd, batch_size=2, max_new_tokens=8,
                                          buckets=(4,))
  assert s_tok == v_tok == s_tok2
  for k in s_stats:
    np.testing.assert_array_equal(s_stats[k], s_stats2[k])
  cost = infer.cost_stats(s_stats, "speculative")
  assert cost["num_examples"] == 5
  np.testing.assert_allclose(cost["rejection_rate"], 1 - s_stats["accepted"].sum()
                             / s_stats["draft_tokens"].sum())
  np.testing.assert_allclose(cost["verifier_calls_per_token"],
                             s_stats["rounds"].sum() / s_stats["num_tokens"].sum())
  np.testing.assert_allclose(cost["drafter_steps_per_token"],
                             s_stats["drafter_steps"].sum() / s_stats["num_tokens"].sum())
  assert cost["verifier_calls_per_token"] <= 1 < cost["drafter_steps_per_token"]
  assert cost["deferral_rate"] is None  # lossless SD has no deferral rule
  v_cost = infer.cost_stats(v_stats, "verifier")
  assert v_cost["rejection_rate"] is None and v_cost["deferral_rate"] is None
  assert v_cost["verifier_calls_per_token"] == 1.0 and v_cost["drafter_steps_per_token"] == 0
  with pytest.raises(ValueError, match="largest length bucket"):
    infer.bucket_length(9, (4, 8))


def test_infer_writes_jsonl(tmp_path, monkeypatch):
  import jax
  q = testing.random_bigram(jax.random.PRNGKey(1), 16)
  data = _fake_task(3)
  monkeypatch.setattr(infer, "load_task", lambda *a, **k: data)
  monkeypatch.setattr(infer, "check_task", lambda *a: None)   # "fake" is no real task
  path = infer.infer(q, q, str(tmp_path), task="fake", method="drafter", batch_size=2,
                     max_new_tokens=4, buckets=(4,))
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  assert [r["index"] for r in rows] == [0, 1, 2]
  assert rows[2]["input"] == "in2" and rows[2]["target"] == "7"
  assert set(rows[0]["stats"]) >= {"rounds", "num_tokens", "deferrals"}
  assert all(1 <= r["stats"]["num_tokens"] <= 4 for r in rows)


@pytest.mark.slow
def test_spread_indices_and_checked_model(tmp_path, tiny_t5_v32):
  np.testing.assert_array_equal(infer.spread_indices(10, 3), [0, 4, 9])
  np.testing.assert_array_equal(infer.spread_indices(3, None), [0, 1, 2])
  from spec_cascade_jax.models.checkpoint import save_model
  _, v = tiny_t5_v32
  save_model(v, str(tmp_path / "m"))
  assert infer.load_checked_model(str(tmp_path / "m"), "tiny-v1.0").config.num_layers == 2
  with pytest.raises(ValueError, match="is not a t5-small checkpoint"):
    infer.load_checked_model(str(tmp_path / "m"), "t5-small")


@pytest.mark.slow
def test_provenance_marks_drafter_tokens(tiny_t5_v32):
  import spec_cascade_jax as scj
  d, _ = tiny_t5_v32   # the drafter of tiny_t5_pair(vocab_size=32) at any verifier depth
  ids = np.array([[5, 6, 1, 0]], np.int32)
  res_d = scj.generate(d, None, ids, method="drafter", max_new_tokens=6)
  marks = demo.drafter_agreement(d, ids, res_d.tokens)
  # Drafter-only greedy output agrees with the drafter everywhere it is valid.
  assert marks.agree[marks.valid].all() and marks.correction_rate == 0.0
  changed = res_d.tokens.copy()
  changed[0, 0] = (changed[0, 0] + 1) % 30 + 2
  assert not demo.drafter_agreement(d, ids, changed).agree[0, 0]
  np.testing.assert_array_equal(demo.output_mask(np.array([[4, 1, 0], [4, 5, 6]])),
                                [[True, True, False], [True, True, True]])
