"""Sweep: resume after an interruption, the Table-2 summary, infer/eval plumbing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spec_cascade_jax import testing
from spec_cascade_jax.evaluation import demo, grids, infer, summary, sweep


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


class FakeBackend:
  """Counts decodes; the verifier's timing depends on the process 'run'."""

  def __init__(self, monkeypatch, verifier_seconds):
    self.decoded, self.timed = [], []
    self.verifier_seconds = verifier_seconds
    monkeypatch.setattr(infer, "load_task", lambda *a, **k: _fake_task())
    monkeypatch.setattr(infer, "resolve_model", lambda m: m)
    monkeypatch.setattr(infer, "decode_batched", self.decode)
    monkeypatch.setattr(infer, "time_point", self.time)

  def decode(self, q, p, input_ids, point, *args, **kwargs):
    self.decoded.append(point.key)
    n = len(input_ids)
    # α > 0.5 "breaks" every other prediction: quality falls with α.
    toks = [[x[0] + (1 if point.alpha > 0.5 and i % 2 else 0), 1]
            for i, x in enumerate(input_ids)]
    stats = {"rounds": np.full(n, 4), "drafter_steps": np.full(n, 8),
             "draft_tokens": np.full(n, 10), "accepted": np.full(n, 6),
             "deferrals": np.full(n, 1), "sequential_verifier_calls": np.zeros(n, int),
             "num_tokens": np.full(n, 2)}
    return toks, stats

  def time(self, q, p, input_ids, point, *args, **kwargs):
    self.timed.append(point.key)
    if point.method == "verifier":
      return self.verifier_seconds
    return 0.5 + point.alpha


class Interrupt(Exception):
  pass


def _run(tmp_path, **kw):
  return sweep.run_sweep("drafter", "verifier", output_dir=str(tmp_path), task="fake",
                         grid="small", make_plots=False, **kw)


def test_resume_after_interruption_loses_no_finished_point(tmp_path, monkeypatch):
  points = grids.build_points(grids.SMALL)
  assert len(points) == 5
  first = FakeBackend(monkeypatch, verifier_seconds=2.0)
  seen = []

  def stop_after_three(record):
    seen.append(record["key"])
    if len(seen) == 3:
      raise Interrupt()

  with pytest.raises(Interrupt):
    _run(tmp_path, on_point=stop_after_three)
  path = os.path.join(tmp_path, sweep.RESULTS_FILE)
  saved = sweep.load_results(path)
  assert [r["key"] for r in saved] == [p.key for p in points[:3]]
  first_run = {r["run_id"] for r in saved}
  assert len(first_run) == 1
  # A write cut short by a kill leaves a partial last line: it must be ignored.
  with open(path, "a") as f:
    f.write('{"kind": "point", "key": "partial')

  second = FakeBackend(monkeypatch, verifier_seconds=4.0)  # a slower machine now
  out = _run(tmp_path)
  # Only the two unfinished points were decoded again.
  assert second.decoded == [p.key for p in points[3:]]
  records = sweep.load_results(path)
  keys = [r["key"] for r in records]
  assert sorted(keys) == sorted(p.key for p in points)
  assert len(set(keys)) == len(keys)
  old = [r for r in records if r["run_id"] in first_run]
  new = [r for r in records if r["run_id"] not in first_run]
  assert len(old) == 3 and len(new) == 2
  # Each point is relative to the verifier timing of the run that measured it.
  spec_old = next(r for r in old if r["method"] == "speculative")
  np.testing.assert_allclose(spec_old["relative_latency"], 0.5 / 2.0)
  for r in new:
    np.testing.assert_allclose(r["relative_latency"], (0.5 + r["alpha"]) / 4.0)
  baselines = [r for r in sweep.ResultsFile(path).read() if r.get("kind") == "baseline"]
  assert [b["latency_s"] for b in baselines] == [2.0, 4.0]
  assert out["metric"] == "exact"

  # A third run has nothing left to do.
  third = FakeBackend(monkeypatch, verifier_seconds=1.0)
  _run(tmp_path)
  assert third.decoded == [] and third.timed == []


def test_rerun_with_other_settings_is_refused(tmp_path, monkeypatch):
  FakeBackend(monkeypatch, verifier_seconds=1.0)
  _run(tmp_path, max_new_tokens=8)
  with pytest.raises(ValueError, match="max_new_tokens"):
    _run(tmp_path, max_new_tokens=16)


def test_sweep_writes_summary_and_plots(tmp_path, monkeypatch):
  FakeBackend(monkeypatch, verifier_seconds=1.0)
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
    assert "copying the input unchanged: 33.33" in f.read()
  with open(os.path.join(tmp_path, "tradeoff.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# The Table-2 summary on a hand-made results file.
# ---------------------------------------------------------------------------


def _rec(curve, method, alpha, quality, latency, temperature=0.0, seed=0, accepted=None,
         drafted=None, deferral=0.0):
  rej = None if drafted is None else 1.0 - accepted / drafted
  return {"kind": "point", "curve": curve, "method": method, "rule": "", "alpha": alpha,
          "num_draft_tokens": 5, "temperature": temperature, "seed": seed,
          "quality": {"bleu": quality, "chrf": 50.0}, "relative_latency": latency,
          "cost": {"rejection_rate": rej, "deferral_rate": deferral,
                   "tokens_per_verifier_call": 2.0}}


SYNTHETIC = [
    _rec("Verifier", "verifier", 0.0, 30.0, 1.0, deferral=1.0),
    _rec("Drafter", "drafter", 0.0, 20.0, 0.3),
    _rec("SpecDecode", "speculative", 0.0, 30.0, 0.7, accepted=60, drafted=100),
    # SpecCascade: α=0.1 reaches 30.5 at 0.8; α=0.3 reaches 30.0 at 0.6 (the least);
    # α=0.6 is faster but below the verifier.
    _rec("SpecCascade[token_v3]", "spec_cascade", 0.1, 30.5, 0.8, accepted=70, drafted=100),
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

  md = summary.format_markdown(s)
  assert "| SpecCascade[token_v3] | 0.600 (α=0.3) | 1.67× | 30.50 (α=0.1, 0.800) | 0.300 |" in md
  assert "| TokenCascade[chow] | not reached |" in md
  assert "mean ± sd over 2 seeds" in md and "25.00 ± 1.41" in md


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
  n0 = sum(1 if c.method in grids.NO_ALPHA_METHODS else len(c.alphas) for c in grids.DEMO)
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


# ---------------------------------------------------------------------------
# Real decoding, small: batching/padding, cost statistics, infer's JSONL.
# ---------------------------------------------------------------------------


def test_decode_batched_is_independent_of_batching_and_sd_equals_verifier():
  import jax
  q = testing.random_bigram(jax.random.PRNGKey(1), 16, sharpness=2.0)
  p = testing.random_bigram(jax.random.PRNGKey(2), 16, sharpness=2.0)
  ids = [[3, 1], [4, 5, 1], [2, 7, 9, 1], [6, 1], [8, 8, 1]]
  ver = grids.Point("Verifier", "verifier")
  sd = grids.Point("SpecDecode", "speculative", num_draft_tokens=3)
  v_tok, _ = infer.decode_batched(q, p, ids, ver, batch_size=4, max_new_tokens=8,
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
  np.testing.assert_allclose(cost["tokens_per_verifier_call"],
                             s_stats["num_tokens"].sum() / s_stats["rounds"].sum())
  assert infer.cost_stats(s_stats, "verifier")["rejection_rate"] is None
  with pytest.raises(ValueError, match="largest length bucket"):
    infer.bucket_length(9, (4, 8))


def test_infer_writes_jsonl(tmp_path, monkeypatch):
  import jax
  q = testing.random_bigram(jax.random.PRNGKey(1), 16)
  data = _fake_task(3)
  monkeypatch.setattr(infer, "load_task", lambda *a, **k: data)
  path = infer.infer(q, q, str(tmp_path), task="fake", method="drafter", batch_size=2,
                     max_new_tokens=4, buckets=(4,))
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  assert [r["index"] for r in rows] == [0, 1, 2]
  assert rows[2]["input"] == "in2" and rows[2]["target"] == "7"
  assert set(rows[0]["stats"]) >= {"rounds", "num_tokens", "deferrals"}
  assert all(1 <= r["stats"]["num_tokens"] <= 4 for r in rows)


def test_spread_indices_and_checked_model(tmp_path):
  np.testing.assert_array_equal(infer.spread_indices(10, 3), [0, 4, 9])
  np.testing.assert_array_equal(infer.spread_indices(3, None), [0, 1, 2])
  from spec_cascade_jax.models.checkpoint import save_model
  _, v = testing.tiny_t5_pair(vocab_size=32, verifier_layers=2)
  save_model(v, str(tmp_path / "m"))
  assert infer.load_checked_model(str(tmp_path / "m"), "tiny-v1.0").config.num_layers == 2
  with pytest.raises(ValueError, match="is not a t5-small checkpoint"):
    infer.load_checked_model(str(tmp_path / "m"), "t5-small")


def test_provenance_marks_drafter_tokens():
  import spec_cascade_jax as scj
  d, _ = testing.tiny_t5_pair(vocab_size=32)
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
