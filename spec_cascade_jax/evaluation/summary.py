"""The paper's Table 2 from saved sweep points (no decoding here).

Per temperature and curve:
  speed-up at the verifier's quality  1 / the least relative latency among the
                            curve's points whose quality reaches the verifier's
                            (>=; no interpolation between α), and the α there;
  the point shown           the best-quality point no slower than the verifier
                            (relative latency <= 1) or, where every point is
                            slower, the fastest one: its α, quality, relative
                            latency with its bootstrap interval, output length
                            relative to the verifier's, verifier calls and
                            drafter steps per token, rejection and deferral rates.
At temperature > 0 the seeds of a point are averaged first (mean, and the
sample standard deviation as the spread); the table is computed on the means.
The cost model (evaluation/cost_model.py), per temperature:
  verifier time             verifier-only seconds per example, measured and
                            modelled (its encoder and steps at the step costs
                            timed among the same pairs, and its loop's own
                            work), and their ratio;
  the model's choice        per curve, the point (α, τ) the model predicts
                            fastest among those reaching the verifier's
                            quality, beside the measured fastest;
  γ                         for lossless SD, Leviathan et al.'s γ that
                            maximises the predicted speed-up at its measured
                            acceptance rate and this machine's step costs.
`format_markdown` prints a legend under each table (LEGEND), then the
calibrated α of each curve where the points carry per-example losses
(calibration.calibrate_sweep: chosen on half of the examples, checked on the rest).

    s = summarize(load_results("runs/demo"))
    print(format_markdown(s))
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import numpy as np

from spec_cascade_jax.evaluation import calibration, cost_model, grids

PREFERRED_METRICS = ("bleu", "rouge2", "rougeLsum", "chrf")


def default_metric(records: Sequence[Mapping]) -> str:
  """bleu, else rouge2, ..., else the first metric of the first point."""
  if not records:
    raise ValueError("no sweep points to summarize; run the sweep first")
  names = list(records[0]["quality"])
  for m in PREFERRED_METRICS:
    if m in names:
      return m
  return names[0]


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
  vals = [v for v in values if v is not None]
  if not vals:
    return None, None
  arr = np.asarray(vals, np.float64)
  return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def aggregate(records: Sequence[Mapping], metric: str) -> list[dict]:
  """One row per (curve, α, γ, temperature): means and spreads over seeds.

  Rows are sorted by temperature, then curve order of first appearance, then α.
  """
  groups: dict[tuple, list[Mapping]] = {}
  for r in records:
    if metric not in r["quality"]:
      raise ValueError(f"metric {metric!r} not in the results (they have "
                       f"{sorted(r['quality'])}); pass one of those")
    k = (r["temperature"], r["curve"], r["method"], r["rule"], r["alpha"],
         r["num_draft_tokens"], r.get("draft_threshold", 0.0))
    groups.setdefault(k, []).append(r)
  curve_order = {c: i for i, c in enumerate(dict.fromkeys(r["curve"] for r in records))}
  rows = []
  for (t, curve, method, rule, alpha, gamma, tau), rs in groups.items():
    q, q_sd = _mean_std([r["quality"][metric] for r in rs])
    lat, lat_sd = _mean_std([r["relative_latency"] for r in rs])
    intervals = [r.get("relative_latency_interval") for r in rs]
    interval = ([float(np.mean([i[0] for i in intervals])),
                 float(np.mean([i[1] for i in intervals]))]
                if all(intervals) else None)
    cost = {k: _mean_std([r["cost"].get(k) for r in rs])[0] for k in _COSTS}
    predicted, _ = _mean_std([r.get("predicted_relative_latency") for r in rs])
    seconds = {k: _mean_std([r.get(k) for r in rs])[0] for k in _SECONDS}
    rows.append({"temperature": t, "curve": curve, "method": method, "rule": rule,
                 "alpha": alpha, "num_draft_tokens": gamma, "num_seeds": len(rs),
                 "draft_policy": rs[0].get("draft_policy", ""), "draft_threshold": tau,
                 "quality": q, "quality_std": q_sd, "relative_latency": lat,
                 "relative_latency_std": lat_sd, "relative_latency_interval": interval,
                 "predicted_relative_latency": predicted, **seconds, **cost})
  rows.sort(key=lambda r: (r["temperature"], curve_order[r["curve"]], r["alpha"],
                           r["draft_threshold"]))
  for t in {r["temperature"] for r in rows}:  # output length relative to the verifier's
    ver = [r for r in rows if r["temperature"] == t and r["method"] == "verifier"]
    for r in rows:
      if r["temperature"] == t:
        r["relative_length"] = (r["mean_tokens"] / ver[0]["mean_tokens"]
                                if ver and ver[0]["mean_tokens"] and r["mean_tokens"] is not None
                                else None)
  return rows


_SECONDS = ("latency_s", "modelled_latency_s", "verifier_latency_s",
            "verifier_modelled_latency_s")
_COSTS = ("rejection_rate", "deferral_rate", "verifier_calls_per_token",
          "drafter_steps_per_token", "mean_tokens")
_AT_KEYS = ("alpha", "draft_threshold", "quality", "quality_std", "relative_latency",
            "relative_latency_std", "relative_latency_interval", "relative_length", "rejection_rate",
            "deferral_rate", "verifier_calls_per_token", "drafter_steps_per_token",
            "predicted_relative_latency")


def _at(row: Mapping | None, prefix: str) -> dict:
  return {f"{prefix}_{k}": (row.get(k) if row is not None else None) for k in _AT_KEYS}


def pooled_costs(records: Sequence[Mapping]) -> dict[str, "cost_model.StepCosts"]:
  """{length bucket: StepCosts}: each cost the median over the points that
  timed it (their "step_costs"), an estimate from every point's minutes."""
  by_bucket: dict[str, list[dict]] = {}
  for r in records:
    for n, c in (r.get("step_costs") or {}).items():
      by_bucket.setdefault(n, []).append(c)
  out = {}
  for n, cs in by_bucket.items():
    def med(get):
      vals = [get(c) for c in cs]
      return float(np.median([v for v in vals if v is not None]))
    widths = sorted({k for c in cs for k in c["verifier_chunk"]}, key=int)
    rounds = sorted({k for c in cs for k in (c.get("round_cost") or {})}, key=int)
    out[n] = cost_model.StepCosts(
        encode_drafter=med(lambda c: c["encode_drafter"]),
        encode_verifier=med(lambda c: c["encode_verifier"]),
        drafter_step=med(lambda c: c["drafter_step"]),
        verifier_chunk={int(k): med(lambda c, k=k: c["verifier_chunk"].get(k))
                        for k in widths},
        round_cost={int(k): med(lambda c, k=k: (c.get("round_cost") or {}).get(k))
                    for k in rounds} or None)
  return out


def _loop_costs(record: Mapping) -> dict[str, "cost_model.LoopCost"]:
  """A point's {side: LoopCost} ("loop_costs"); {} for records without them."""
  return {side: cost_model.LoopCost.from_dict(c)
          for side, c in (record.get("loop_costs") or {}).items()}


def pooled_predictions(records: Sequence[Mapping],
                       costs: Mapping[str, "cost_model.StepCosts"] | None = None) -> list[dict]:
  """The records, each point that kept its counts ("counts") predicted again
  at the run's median step costs (`pooled_costs`): a point's own step costs,
  from its few minutes, are noisier than the run's median, and load that
  comes and goes hits the measured ratio's two sides alike. Each side's loop
  cost ("loop_costs") stays the point's own: it belongs to the point's
  method. The point's own prediction stays as
  "point_predicted_relative_latency". costs: the records' `pooled_costs`,
  where the caller has them already."""
  costs = pooled_costs(records) if costs is None else costs
  out = []
  for r in records:
    counts = r.get("counts")
    if not counts or not costs:
      out.append(r)
      continue
    groups = [str(n) for n in r["example_buckets"]]
    loops = _loop_costs(r)
    pred = cost_model.relative_latency(r["method"], counts["method"], counts["verifier"],
                                       costs, r["num_draft_tokens"], groups=groups,
                                       loop=loops.get("method"),
                                       verifier_loop=loops.get("verifier"))
    out.append(dict(r, predicted_relative_latency=pred,
                    point_predicted_relative_latency=r.get("predicted_relative_latency")))
  return out


def summarize(records: Sequence[Mapping], metric: str | None = None,
              copy_quality: Mapping[str, float] | None = None) -> dict:
  """{"metric", "tables": [{"temperature", "verifier_quality", ..., "rows": [...]}]}.

  copy_quality: the metrics of returning each input unchanged (the sweep
  records it); the tables show it beside the verifier's and drafter's.
  Points with their counts are predicted at the run's median step costs
  (`pooled_predictions`)."""
  costs = pooled_costs(records)
  records = pooled_predictions(records, costs)
  metric = metric or default_metric(records)
  agg = aggregate(records, metric)
  latency_examples = max((r.get("num_latency_examples") or 0 for r in records), default=0)
  tables = []
  for t in sorted({r["temperature"] for r in agg}):
    rows_t = [r for r in agg if r["temperature"] == t]
    ver = [r for r in rows_t if r["method"] == "verifier"]
    if not ver:
      raise ValueError(f"no verifier point at temperature {t}: the table is relative to "
                       "the verifier; include the Verifier curve in the sweep")
    v_quality = ver[0]["quality"]
    drafter = [r for r in rows_t if r["method"] == "drafter"]
    out_rows = []
    for curve in dict.fromkeys(r["curve"] for r in rows_t):
      pts = [r for r in rows_t if r["curve"] == curve]
      reach = [r for r in pts if r["quality"] >= v_quality]
      fastest = min(reach, key=lambda r: (r["relative_latency"], -r["quality"]),
                    default=None)
      within = [r for r in pts if r["relative_latency"] <= 1.0]
      best = max(within, key=lambda r: (r["quality"], -r["relative_latency"]), default=None)
      shown = best or min(pts, key=lambda r: (r["relative_latency"], -r["quality"]))
      predicted = [r for r in reach if r["predicted_relative_latency"] is not None]
      chosen = min(predicted, key=lambda r: (r["predicted_relative_latency"], -r["quality"]),
                   default=None)
      # The verifier's speed-up is 1 by definition: its own latency (paired
      # with itself) is timing noise, shown in the latency column only.
      own = pts[0]["method"] == "verifier"
      out_rows.append({"curve": curve, "method": pts[0]["method"], "num_points": len(pts),
                       "latency_at_verifier_quality": (fastest["relative_latency"]
                                                       if fastest else None),
                       "speedup_at_verifier_quality": (1.0 if own else
                                                       1.0 / fastest["relative_latency"]
                                                       if fastest else None),
                       **_at(fastest, "matched"),
                       "best_quality_within_verifier_latency": (best["quality"]
                                                                if best else None),
                       **_at(best, "best"), **_at(shown, "shown"),
                       **_at(chosen, "chosen")})
    tables.append({"temperature": t, "verifier_quality": v_quality,
                   "verifier_quality_std": ver[0]["quality_std"],
                   "drafter_quality": drafter[0]["quality"] if drafter else None,
                   "copy_quality": (copy_quality or {}).get(metric),
                   "num_seeds": max(r["num_seeds"] for r in rows_t),
                   "num_latency_examples": latency_examples, "rows": out_rows,
                   "verifier_time": _verifier_time(ver[0]),
                   "num_draft_tokens_choice": _gamma_choice(records, t, costs)})
  return {"metric": metric, "tables": tables, "points": agg,
          "calibrated": calibration.calibrate_sweep(records)}


def _verifier_time(ver: Mapping) -> dict | None:
  """Verifier-only seconds per example, measured and modelled, and their ratio."""
  measured, modelled = ver.get("latency_s"), ver.get("modelled_latency_s")
  if not measured or not modelled:
    return None
  return {"measured_s": measured, "modelled_s": modelled, "ratio": measured / modelled}


def _gamma_choice(records: Sequence[Mapping], temperature: float,
                  costs: Mapping[str, "cost_model.StepCosts"]) -> dict | None:
  """The cost model's γ for lossless SD (constant draft length) at its
  acceptance rate a = accepted / drafted (the first seed's), the run's
  median step costs (`costs`, its first length bucket's) and the point's loop
  costs, the output length counting the encoders:
  {"acceptance", "num_draft_tokens" (run), "best", "speedup": {γ: predicted}}."""
  sd = [r for r in records if r["method"] == "speculative" and r["temperature"] == temperature
        and r.get("draft_policy", "constant") in ("constant", "") and r.get("step_costs")
        and r["cost"].get("rejection_rate") is not None]
  if not sd:
    return None
  r = sd[0]
  acceptance = 1.0 - r["cost"]["rejection_rate"]
  bucket = next(iter(r["step_costs"]))
  loops = _loop_costs(r)
  best, speed = cost_model.best_num_draft_tokens(
      acceptance, costs[bucket], mean_tokens=r["cost"]["mean_tokens"],
      loop=loops.get("method"), verifier_loop=loops.get("verifier"))
  return {"acceptance": acceptance, "num_draft_tokens": r["num_draft_tokens"], "best": best,
          "speedup": speed}


def _f(x, fmt="{:.3f}") -> str:
  return "—" if x is None else fmt.format(x)


def _pm(x, sd, fmt="{:.2f}") -> str:
  if x is None:
    return "—"
  return fmt.format(x) + (f" ± {fmt.format(sd)}" if sd else "")


LEGEND = (
    "- **speed-up at verifier {m}**: 1 / the lowest latency among the method's points "
    "whose {m} reaches the verifier's, with the α of that point (and τ, the threshold "
    "of a +confidence draft policy, swept jointly with α); *not reached* if none.",
    "- The other columns describe one point of each method: its best {m} among points "
    "no slower than the verifier or, where every point is slower, its fastest point.",
    "- **latency**: batch-1 time relative to the verifier's, each of the {n} examples "
    "timed paired and interleaved with verifier-only decoding; in brackets the "
    "95% bootstrap interval over examples. The verifier's own row (paired with "
    "itself) shows the timing noise.",
    "- **length**: mean output tokens relative to the verifier's. A method above the "
    "verifier's {m} with a length well below 1 cut the verifier's repetition loops or "
    "over-long outputs rather than translating better.",
    "- **verifier calls / token**, **drafter steps / token**: what each output token "
    "cost; they do not depend on the machine and explain the latency.",
    "- **deferral rate**: share of output tokens the deferral rule handed to the "
    "verifier (of sequences for SeqCascade); — for methods without a rule (the "
    "verifier and lossless SD always use the verifier's distribution; lossy SD, "
    "prompt lookup and the drafter never defer).",
    "- **predicted latency**: the cost model's relative latency (evaluation/cost_model.py): "
    "the counts of the timed decodes priced by this machine's step costs (encoders, "
    "drafter step, verifier chunk of each width, speculative round of each width), "
    "timed among every point's pairs, the median over the run, and by the loop's own "
    "work beyond them (a fixed cost per decode and a cost per round or token, timed "
    "with free models; evaluation/loop_costs.py). Measured above predicted is time "
    "the model does not see.",
)


def _setting(row: Mapping, prefix: str) -> str:
  """'α=0.1', 'τ=0.3' or 'α=0.1, τ=0.3' (the confidence draft policy's
  threshold) of a summary row's point `prefix`; '' where it has neither."""
  out = []
  if row["method"] not in grids.NO_ALPHA_METHODS and row.get(f"{prefix}_alpha") is not None:
    out.append(f"α={row[f'{prefix}_alpha']:g}")
  if row.get(f"{prefix}_draft_threshold"):
    out.append(f"τ={row[f'{prefix}_draft_threshold']:g}")
  return ", ".join(out)


def format_markdown(s: Mapping) -> str:
  """The Table-2 summary as markdown: one table per temperature, legend below."""
  m = s["metric"]
  lines = []
  for tab in s["tables"]:
    seeds = f", mean ± sd over {tab['num_seeds']} seeds" if tab["temperature"] > 0 else ""
    lines += [f"### Temperature {tab['temperature']:g}{seeds}", "",
              f"Verifier {m}: {_pm(tab['verifier_quality'], tab['verifier_quality_std'])}; "
              f"drafter {m}: {_f(tab['drafter_quality'], '{:.2f}')}; copying the input "
              f"unchanged: {_f(tab.get('copy_quality'), '{:.2f}')}.", "",
              f"| method | speed-up at verifier {m} (α) | α | {m} | latency [95% interval] "
              "| length | verifier calls / token | drafter steps / token | deferral rate "
              "| predicted latency |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in tab["rows"]:
      matched = _setting(r, "matched")
      speedup = ("not reached" if r["speedup_at_verifier_quality"] is None else
                 f"{r['speedup_at_verifier_quality']:.2f}×"
                 + (f" ({matched})" if matched else ""))
      alpha = _setting(r, "shown").replace("α=", "") or "—"
      iv = r["shown_relative_latency_interval"]
      lat = _f(r["shown_relative_latency"]) + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")
      lines.append(
          f"| {r['curve']} | {speedup} | {alpha} | "
          f"{_pm(r['shown_quality'], r['shown_quality_std'])} | {lat} | "
          f"{_f(r['shown_relative_length'], '{:.2f}')} | "
          f"{_f(r['shown_verifier_calls_per_token'])} | "
          f"{_f(r['shown_drafter_steps_per_token'], '{:.2f}')} | "
          f"{_f(r['shown_deferral_rate'])} | "
          f"{_f(r['shown_predicted_relative_latency'])} |")
    lines += [""] + [x.format(m=m, n=tab.get("num_latency_examples") or "N")
                     for x in LEGEND] + [""] + _format_cost_model(tab)
  calibrated = calibration.format_sweep_rows(s.get("calibrated") or [])
  return "\n".join(lines + ([calibrated] if calibrated else []))


def _format_cost_model(tab: Mapping) -> list[str]:
  """The cost model's lines under a table (module docstring); [] without them."""
  out = []
  vt = tab.get("verifier_time")
  if vt:
    out.append(f"Verifier-only decoding: {1e3 * vt['measured_s']:.2f} ms per example "
               f"measured, {1e3 * vt['modelled_s']:.2f} ms modelled (its encoder, "
               f"steps and loop): {vt['ratio']:.3f}× the modelled time.")
  rows = [r for r in tab["rows"] if r["chosen_predicted_relative_latency"] is not None
          and r["method"] not in ("verifier", "drafter")]
  if rows:
    out += ["", "The cost model's choice: of each curve's points that reach the verifier's "
            "quality, the one it predicts fastest, beside the one measured fastest.", "",
            "| method | measured fastest | its latency | model's choice | predicted "
            "| measured |", "|---|---|---|---|---|---|"]
    for r in rows:
      out.append(f"| {r['curve']} | {_setting(r, 'matched') or '—'} | "
                 f"{_f(r['matched_relative_latency'])} | {_setting(r, 'chosen') or '—'} | "
                 f"{_f(r['chosen_predicted_relative_latency'])} | "
                 f"{_f(r['chosen_relative_latency'])} |")
  g = tab.get("num_draft_tokens_choice")
  if g:
    speed = ", ".join(f"γ={k}: {v:.3f}×" for k, v in g["speedup"].items())
    out += ["", f"Lossless SD's γ by the cost model (Leviathan et al.'s expected tokens "
            f"per round at its acceptance rate {g['acceptance']:.3f}, this machine's step "
            f"and loop costs): γ = {g['best']} (run with γ = {g['num_draft_tokens']}); predicted "
            f"speed-up {speed}."]
  return out + ([""] if out else [])


def save(s: Mapping, output_dir: str) -> tuple[str, str]:
  """Writes summary.md and summary.json; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  md = os.path.join(output_dir, "summary.md")
  js = os.path.join(output_dir, "summary.json")
  with open(md, "w", encoding="utf-8") as f:
    f.write(format_markdown(s) + "\n")
  with open(js, "w", encoding="utf-8") as f:
    json.dump(s, f, indent=1, ensure_ascii=False)
  return md, js
