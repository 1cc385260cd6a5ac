"""Where a main-job point's time goes: the cost model against the measurement.

For each temperature-0 point of a main-job results file (docs/demo), the
latency examples are decoded again at batch 1 (greedy decoding is
deterministic: the counts are those of the timed runs), this machine's step
costs and each point's loop costs are measured (evaluation/step_costs.py,
evaluation/loop_costs.py), and the cost model (evaluation/cost_model.py)
predicts each point's latency relative to the verifier, printed beside the
relative latency the main job measured and the one measured here, every
decode and every cost program timed in one round-robin (the same minutes,
the same order effects):

  predicted vs measured  the model's relative latency, the recorded one,
                         measured / predicted, the relative latency measured
                         now and now / predicted (goal: within 15%);
  overhead               each method's batch-1 `generate` timed now, per
                         example (fastest of --repeats, methods interleaved
                         with each other and with the step-cost programs, so
                         both meet the same load), against the model's
                         seconds for the same decodes (model calls and loop):
                         measured / modelled time (goal: at most 1.10) and the
                         milliseconds per call beyond the model;
  accelerator, modelled  the same counts priced by step costs recorded on an
                         accelerator (benchmarks/results/gpu_h200.json,
                         `--accelerator-pair`): modelled, not measured;
  γ                      the γ that maximises Leviathan et al.'s predicted
                         speed-up at lossless SD's acceptance rate, on this
                         machine and on the accelerator.

    python benchmarks/cost_model.py docs/demo --json benchmarks/results/cost_model_loops.json \\
      | tee benchmarks/results/cost_model_loops.txt
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from spec_cascade_jax.evaluation import (cost_model, grids, infer, loop_costs,  # noqa: E402
                                         step_costs)
from spec_cascade_jax.evaluation.cost_model import StepCosts  # noqa: E402
from spec_cascade_jax.evaluation.results import ResultsFile, results_path  # noqa: E402

ACCELERATOR_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                "gpu_h200.json")


def accelerator_costs(path: str, pair: str) -> tuple[StepCosts, dict]:
  """StepCosts from a `gpu.py` results file (batch 1): the drafter step and the
  verifier's step and 6-token chunk (widths between: linear). gpu.py does not
  time the encoders: they read 0, so the projection leaves them out."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  p = data["pairs"][pair]
  chunk = {1: p["verifier_step_b1_k1"]["ms"] / 1e3}
  chunk.update({int(k.rsplit("_k", 1)[1]): v["ms"] / 1e3 for k, v in p.items()
                if k.startswith("verifier_step_b1_k")})
  costs = StepCosts(encode_drafter=0.0, encode_verifier=0.0,
                    drafter_step=p["drafter_step_b1_ms"] / 1e3, verifier_chunk=chunk)
  return costs, {"file": os.path.relpath(path), "pair": pair, "drafter": p["drafter"],
                 "verifier": p["verifier"], "device": data["machine"]["device"],
                 "date": data["machine"]["date"][:10]}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("results", help="a main-job output directory or its results.jsonl")
  ap.add_argument("--repeats", type=int, default=5, help="timings per example and method")
  ap.add_argument("--accelerator", default=ACCELERATOR_FILE)
  ap.add_argument("--accelerator-pair", default="t5")
  ap.add_argument("--methods", help="comma-separated methods to keep (default: every "
                  "point's; the verifier is always kept)")
  ap.add_argument("--json", help="also write every figure here")
  args = ap.parse_args(argv)

  from spec_cascade_jax.decoding.api import generate
  info = common.machine()
  results = ResultsFile(results_path(args.results))
  ctx = results.context()
  if ctx is None:
    raise SystemExit(f"{results.path}: no sweep record; pass a main-job output directory.")
  points = [p for p in results.points() if p["temperature"] == 0.0]
  if args.methods:
    keep = set(args.methods.split(",")) | {"verifier"}
    points = [p for p in points if p["method"] in keep]
  if not any(p["method"] == "verifier" for p in points):
    raise SystemExit(f"{results.path}: no verifier point at temperature 0.")
  data = infer.load_task(ctx["task"], ctx["split"], ctx["vocabulary"], ctx["max_input_length"],
                         ctx["num_quality_examples"])
  lat_ids = data.subset(infer.spread_indices(len(data), ctx["num_latency_examples"])).input_ids
  lengths = [infer.bucket_length(len(x), ctx["buckets"]) for x in lat_ids]
  inputs = [common.pad_batch([x], n) for x, n in zip(lat_ids, lengths)]
  drafter, verifier = infer.resolve_model(ctx["drafter"]), infer.resolve_model(ctx["verifier"])
  gamma_max = max(p["num_draft_tokens"] for p in points)

  # The step-cost programs of each length bucket (evaluation/step_costs.py),
  # timed among the decodes below so that both meet the same load.
  step_fns, to_costs = {}, {}
  for n in sorted(set(lengths)):
    fns, to_costs[n] = step_costs.programs(drafter, verifier, input_length=n,
                                           max_new_tokens=ctx["max_new_tokens"],
                                           num_draft_tokens=gamma_max)
    step_fns.update({(n, key): fn for key, fn in fns.items()})
  for fn in step_fns.values():
    fn()   # compile

  # Each point's decodes of the latency examples, their counts, and the
  # generate calls to time (one per point and example).
  calls, counts = {}, {}
  for rec in points:
    kwargs = infer.decode_kwargs(grids.Point.from_dict(rec), ctx["max_new_tokens"])
    calls[rec["label"]] = [
        (lambda ids=ids, kw=kwargs: generate(drafter, verifier, ids, **kw)) for ids in inputs]
    stats = [fn().stats for fn in calls[rec["label"]]]
    counts[rec["label"]] = {k: np.array([s[k][0] for s in stats]) for k in stats[0]}
  ver_label = next(p["label"] for p in points if p["method"] == "verifier")
  ver_counts = counts[ver_label]

  # Each point's loop costs: its free decodes (evaluation/loop_costs.py).
  # Every greedy point's verifier side decodes as the verifier point does, so
  # that point's loop cost is every point's verifier loop.
  loop_fns, to_loop = {}, {}
  for rec in points:
    kwargs = infer.decode_kwargs(grids.Point.from_dict(rec), ctx["max_new_tokens"])
    fns, to_loop[rec["label"]] = loop_costs.programs({"method": ("both", kwargs)}, verifier)
    loop_fns.update({(rec["label"], key): fn for key, fn in fns.items()
                     if key != loop_costs.WARM_UP})

  # Measured now: per example, every point's generate, every step-cost
  # program and every free decode in turn, --repeats rounds; the fastest of
  # each. A cost program's time is the mean over examples of its fastest per example, the
  # decodes' statistic (the fastest of all its rounds would have had many
  # more chances than any one decode to meet a quiet moment).
  seconds = {p["label"]: np.zeros(len(inputs)) for p in points}
  probe_rounds = {key: [] for key in {**step_fns, **loop_fns}}
  for i in range(len(inputs)):
    fns = {**{label: fns[i] for label, fns in calls.items()}, **step_fns, **loop_fns}
    for key, t in common.interleaved_times(fns, args.repeats, warmup=False).items():
      if key in probe_rounds:
        probe_rounds[key].append(min(t))
      else:
        seconds[key][i] = min(t)
  costs = {n: to_costs[n]({key: float(np.mean(t)) for (m, key), t in probe_rounds.items()
                           if m == n})
           for n in to_costs}
  loops = {label: to_loop[label]({key: float(np.mean(t)) for (m, key), t in probe_rounds.items()
                                  if m == label})["method"]
           for label in to_loop}
  ver_loop = loops[ver_label]

  acc_costs, acc_info = accelerator_costs(args.accelerator, args.accelerator_pair)
  rows = []
  for rec in points:
    label, method, gamma = rec["label"], rec["method"], rec["num_draft_tokens"]
    c = counts[label]
    predicted = cost_model.relative_latency(method, c, ver_counts, costs, gamma, groups=lengths,
                                            loop=loops[label], verifier_loop=ver_loop)
    parts: dict[str, float] = {}
    for i, n in enumerate(lengths):
      for k, v in cost_model.predict(method, {k: v[[i]] for k, v in c.items()}, costs[n],
                                     gamma, loops[label]).parts.items():
        parts[k] = parts.get(k, 0.0) + v
    modelled_s = sum(parts.values())
    measured_s = float(seconds[label].sum())
    now = measured_s / float(seconds[ver_label].sum())
    rows.append({
        "point": label, "method": method, "measured": rec["relative_latency"],
        "predicted": predicted, "measured_over_predicted": rec["relative_latency"] / predicted,
        "now_relative": now, "now_over_predicted": now / predicted,
        "ms_per_example": 1e3 * measured_s / len(inputs),
        "modelled_ms_per_example": 1e3 * modelled_s / len(inputs),
        "time_over_model": measured_s / modelled_s,
        "overhead_ms_per_call": 1e3 * (measured_s - modelled_s) / len(inputs),
        **{f"{k}_ms": 1e3 * v / len(inputs) for k, v in parts.items()},
        "accelerator_modelled": cost_model.relative_latency(method, c, ver_counts, acc_costs,
                                                           gamma)})

  spec = next((p for p in points if p["method"] == "speculative"), None)
  choice = {}
  if spec is not None:
    acceptance = 1.0 - spec["cost"]["rejection_rate"]
    mean_tokens = float(np.mean(ver_counts["num_tokens"]))
    machine_costs = costs[max(costs)]
    best, speed = cost_model.best_num_draft_tokens(acceptance, machine_costs,
                                                   mean_tokens=mean_tokens,
                                                   loop=loops[spec["label"]],
                                                   verifier_loop=ver_loop)
    acc_best, acc_speed = cost_model.best_num_draft_tokens(acceptance, acc_costs)
    choice = {"acceptance": acceptance, "mean_tokens": mean_tokens, "this_machine": best,
              "this_machine_speedups": speed, "accelerator": acc_best,
              "accelerator_speedups": acc_speed}

  print(common.header(info) + f"  {results.path}: {ctx['drafter']} -> {ctx['verifier']}, "
        f"{len(inputs)} latency examples, run {points[0].get('finished', '?')[:10]}")
  for n, c in costs.items():
    print(f"step costs, inputs of {n} tokens (ms): encoders {1e3 * c.encode_drafter:.3f} "
          f"(drafter) {1e3 * c.encode_verifier:.3f} (verifier); drafter step "
          f"{1e3 * c.drafter_step:.3f}; verifier chunk c(k), k = 1..{c.max_chunk}: "
          + " ".join(f"{1e3 * v:.3f}" for v in c.verifier_chunk.values()))
  print("\n## relative latency: the main job's measurement against the cost model")
  print(common.format_table(rows, [
      ("point", "point", ""), ("measured", "measured", ".3f"), ("predicted", "predicted", ".3f"),
      ("measured_over_predicted", "measured/predicted", ".3f"),
      ("now_relative", "measured now", ".3f"), ("now_over_predicted", "now/predicted", ".3f")]))
  print("\n## time per call against the model's (batch 1, measured now)")
  print(common.format_table(rows, [
      ("point", "point", ""), ("ms_per_example", "ms/ex", ".2f"),
      ("modelled_ms_per_example", "modelled ms/ex", ".2f"),
      ("time_over_model", "measured/modelled", ".3f"),
      ("overhead_ms_per_call", "beyond model ms", ".2f"),
      ("encode_drafter_ms", "enc d", ".2f"), ("encode_verifier_ms", "enc v", ".2f"),
      ("drafter_steps_ms", "drafter", ".2f"), ("verifier_calls_ms", "verifier", ".2f"),
      ("loop_ms", "loop", ".2f")]))
  print(f"\n## modelled, not measured: these counts at {acc_info['device']} step costs "
        f"({acc_info['drafter']} -> {acc_info['verifier']} shapes, {acc_info['file']}, "
        f"{acc_info['date']}; encoders not recorded, left out)")
  print(f"step costs (ms): drafter step {1e3 * acc_costs.drafter_step:.3f}; verifier chunk "
        + ", ".join(f"c({k}) {1e3 * v:.3f}" for k, v in acc_costs.verifier_chunk.items())
        + " (linear between)")
  print(common.format_table(rows, [
      ("point", "point", ""), ("accelerator_modelled", "modelled relative latency", ".3f")]))
  if choice:
    print(f"\n## γ for lossless SD at its acceptance rate {choice['acceptance']:.3f} "
          f"(Leviathan et al.; {choice['mean_tokens']:.1f} tokens, encoders counted here)")
    print("γ:                  " + " ".join(f"{g:6d}" for g in choice["this_machine_speedups"]))
    print("this machine:       " + " ".join(f"{s:6.3f}"
                                            for s in choice["this_machine_speedups"].values())
          + f"   best γ = {choice['this_machine']}")
    print("accelerator (model):" + " ".join(f"{s:6.3f}"
                                            for s in choice["accelerator_speedups"].values())
          + f"   best γ = {choice['accelerator']}")
  if args.json:
    common.write_json(args.json, {
        "machine": info, "results": results.path, "context": ctx,
        "step_costs": {str(n): c.to_dict() for n, c in costs.items()},
        "accelerator": {**acc_info, "step_costs": acc_costs.to_dict()},
        "loop_costs": {label: c.to_dict() for label, c in loops.items()},
        "rows": rows, "num_draft_tokens_choice": choice,
        "worst_measured_over_predicted": max(abs(r["measured_over_predicted"] - 1)
                                             for r in rows),
        "worst_now_over_predicted": max(abs(r["now_over_predicted"] - 1) for r in rows),
        "worst_time_over_model": max(r["time_over_model"] for r in rows)})
  return rows


if __name__ == "__main__":
  main()
