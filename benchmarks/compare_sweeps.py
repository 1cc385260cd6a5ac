"""Two runs of the same sweep side by side: does every speed-up hold still?

    python benchmarks/compare_sweeps.py runs/demo_a runs/demo_b [--json out.json]

For each point in both results files: its speed-up (1 / relative latency) in
each run with the 95% bootstrap interval, and the ratio of the two speed-ups.
The last line gives the largest disagreement; the main job's goal is every
point within ±7%. Quality and output tokens must be identical between the
runs at temperature 0 (same decoding, other minutes): the script says so or
names the points that differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spec_cascade_jax.evaluation import results as results_file  # noqa: E402


def compare(a: list[dict], b: list[dict]) -> dict:
  by_key = {r["key"]: r for r in b}
  rows, quality_differs = [], []
  for ra in a:
    rb = by_key.get(ra["key"])
    if rb is None:
      continue
    sa, sb = 1.0 / ra["relative_latency"], 1.0 / rb["relative_latency"]
    rows.append({"label": ra["label"], "speedup_a": sa, "speedup_b": sb, "b_over_a": sb / sa,
                 "interval_a": [1.0 / x for x in reversed(ra["relative_latency_interval"])],
                 "interval_b": [1.0 / x for x in reversed(rb["relative_latency_interval"])]})
    if ra["temperature"] == 0 and (ra["quality"] != rb["quality"]
                                   or ra["cost"]["total_num_tokens"]
                                   != rb["cost"]["total_num_tokens"]):
      quality_differs.append(ra["label"])
  worst = max(rows, key=lambda r: abs(r["b_over_a"] - 1.0))
  return {"rows": rows, "max_abs_deviation": abs(worst["b_over_a"] - 1.0),
          "worst": worst["label"], "quality_differs": quality_differs,
          "machines": sorted({json.dumps(r.get("machine"), sort_keys=True) for r in a + b})}


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("run_a", help="results.jsonl of a sweep, or its directory")
  ap.add_argument("run_b")
  ap.add_argument("--json", default=None, help="also write the comparison here")
  args = ap.parse_args(argv)
  out = compare(results_file.load_results(args.run_a), results_file.load_results(args.run_b))
  print("| point | speed-up, run A [95%] | speed-up, run B [95%] | B / A |")
  print("|---|---|---|---|")
  for r in out["rows"]:
    ia, ib = r["interval_a"], r["interval_b"]
    print(f"| {r['label']} | {r['speedup_a']:.2f}× [{ia[0]:.2f}, {ia[1]:.2f}] | "
          f"{r['speedup_b']:.2f}× [{ib[0]:.2f}, {ib[1]:.2f}] | {r['b_over_a']:.3f} |")
  print(f"\nlargest disagreement: {100 * out['max_abs_deviation']:.1f}% ({out['worst']}); "
        f"{len(out['rows'])} points")
  print("quality and output tokens identical at T = 0" if not out["quality_differs"]
        else f"quality or tokens differ at T = 0: {out['quality_differs']}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
  main()
