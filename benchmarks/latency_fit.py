"""Where a main-job point's time goes: fixed cost per example, and cost per loop iteration.

Reads a main-job results file (docs/demo/results.jsonl), decodes its latency
examples again, greedily, with each temperature-0 point's method (greedy
decoding is deterministic: the counts are those of the timed runs), and fits
each point's recorded per-example latencies by least squares:

    seconds = fixed + per_iteration × iterations

where an iteration is a verifier call (a round) for the drafting methods and a
generated token for the others. `fixed` is what an example costs whatever its
length (the encoders, cache set-up, the call and its result transfer);
`per_iteration` is the loop's price, to set beside the model calls it makes
(`benchmarks/step_cost.py`). No new timing is done: the latencies are the
main job's.

    python benchmarks/latency_fit.py docs/demo --json runs/latency_fit.json
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from spec_cascade_jax.evaluation import grids, infer  # noqa: E402
from spec_cascade_jax.evaluation.results import ResultsFile, results_path  # noqa: E402


def fit(iterations, seconds) -> dict:
  """Least squares seconds = fixed + per_iteration · iterations, and R²."""
  x, y = np.asarray(iterations, float), np.asarray(seconds, float)
  if len(x) < 3 or np.ptp(x) == 0:
    raise ValueError(f"need at least 3 examples with different iteration counts; got {x}")
  a = np.stack([np.ones_like(x), x], axis=1)
  (fixed, slope), *_ = np.linalg.lstsq(a, y, rcond=None)
  resid = y - a @ np.array([fixed, slope])
  r2 = 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
  return {"fixed_ms": 1e3 * fixed, "per_iteration_ms": 1e3 * slope, "r2": r2,
          "mean_ms": 1e3 * float(y.mean()), "mean_iterations": float(x.mean())}


def iteration_unit(method: str) -> str:
  """What one loop iteration of `method` is: a round (verifier call) for the
  drafting methods, a generated token otherwise."""
  return "round" if method in grids.SPECULATIVE_METHODS else "token"


def iteration_counts(stats: dict, method: str) -> int:
  """Loop iterations (`iteration_unit`) of one batch-1 decode."""
  key = {"round": "rounds", "token": "num_tokens"}[iteration_unit(method)]
  return int(np.asarray(stats[key])[0])


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("results", help="a main-job output directory or its results.jsonl")
  ap.add_argument("--json", help="also write the table here")
  args = ap.parse_args(argv)

  from spec_cascade_jax.decoding.api import generate
  results = ResultsFile(results_path(args.results))
  ctx = results.context()
  if ctx is None:
    raise SystemExit(f"{results.path}: no sweep record; pass a main-job output directory.")
  points = [p for p in results.points() if p["temperature"] == 0.0]
  data = infer.load_task(ctx["task"], ctx["split"], ctx["vocabulary"], ctx["max_input_length"],
                         ctx["num_quality_examples"])
  lat_ids = data.subset(infer.spread_indices(len(data), ctx["num_latency_examples"])).input_ids
  drafter, verifier = infer.resolve_model(ctx["drafter"]), infer.resolve_model(ctx["verifier"])
  rows = []
  for rec in points:
    point = grids.Point.from_dict(rec)
    kwargs = infer.decode_kwargs(point, ctx["max_new_tokens"])
    counts = []
    for x in lat_ids:
      ids = common.pad_batch([x], infer.bucket_length(len(x), ctx["buckets"]))
      counts.append(iteration_counts(generate(drafter, verifier, ids, **kwargs).stats,
                                     point.method))
    rows.append({"point": rec["label"], "unit": iteration_unit(point.method),
                 **fit(counts, rec["latency_examples_s"]["method"])})
  print(f"# {results.path}: {ctx['drafter']} -> {ctx['verifier']}, "
        f"{len(lat_ids)} latency examples, run {points[0].get('finished', '?')[:10]}")
  print(common.format_table(rows, [
      ("point", "point", ""), ("mean_ms", "mean ms", ".1f"), ("fixed_ms", "fixed ms", ".1f"),
      ("per_iteration_ms", "ms per iteration", ".2f"), ("unit", "iteration", ""),
      ("mean_iterations", "iterations", ".1f"), ("r2", "R²", ".3f")]))
  if args.json:
    common.write_json(args.json, {"results": results.path, "context": ctx, "rows": rows})
  return rows


if __name__ == "__main__":
  main()
