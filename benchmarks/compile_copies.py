"""Do separately compiled copies of one decode run at different speeds?

`api.generate_instances(K)` gives K copies of `generate`, each compiling its
own executables. This times K copies of the verifier-only and of one other
method on the same examples, every copy once per example and round in an
order that alternates, and prints each copy's total (the sum over examples
of the median over rounds) and the method/verifier ratio for every pair of
copies. A spread between copies of one program larger than the spread of
one copy between halves of the rounds would be a steady property of each
compilation (one that no repeat within a run averages out); BENCHMARKS.md
("Main job: do two fresh runs agree?") has what it found.

    python benchmarks/compile_copies.py --json benchmarks/results/compile_copies.json
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.decoding import api  # noqa: E402


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--method", default="speculative")
  ap.add_argument("--copies", type=int, default=3)
  ap.add_argument("--examples", type=int, default=16)
  ap.add_argument("--rounds", type=int, default=6)
  ap.add_argument("--max-input-tokens", type=int, default=48)
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--random-weights", action="store_true")
  ap.add_argument("--json", help="also write the results here")
  common.add_demo_pair_flag(ap)
  args = ap.parse_args(argv)
  drafter, verifier, source = common.demo_pair(args.random_weights, pair=args.demo_pair)
  exs = [ex["ids"] for ex in common.gettext_examples(args.examples,
                                                     max_input_tokens=args.max_input_tokens,
                                                     pair=args.demo_pair)]
  ids = [common.pad_batch([e], length=args.max_input_tokens) for e in exs]
  copies = api.generate_instances(args.copies)
  kw = dict(max_new_tokens=args.max_new_tokens)
  fns = {}
  for i, g in enumerate(copies):
    fns[f"{args.method}#{i}"] = lambda x, g=g: g(drafter, verifier, x, method=args.method, **kw)
    fns[f"verifier#{i}"] = lambda x, g=g: g(None, verifier, x, method="verifier", **kw)
  for f in fns.values():  # compile and warm every copy
    f(ids[0])
  times = {k: np.zeros((args.rounds, len(ids))) for k in fns}
  for r in range(args.rounds):
    order = list(fns) if r % 2 == 0 else list(fns)[::-1]
    for j, x in enumerate(ids):
      for k in order:
        t0 = time.perf_counter()
        fns[k](x)
        times[k][r, j] = time.perf_counter() - t0
  half = args.rounds // 2
  rows = []
  for k, t in times.items():
    rows.append({"copy": k, "total_ms": 1e3 * float(np.median(t, axis=0).sum()),
                 "first_half_ms": 1e3 * float(np.median(t[:half], axis=0).sum()),
                 "second_half_ms": 1e3 * float(np.median(t[half:], axis=0).sum())})
  total = {r["copy"]: r["total_ms"] for r in rows}
  ratios = {f"{args.method}#{i}/verifier#{j}": total[f"{args.method}#{i}"]
            / total[f"verifier#{j}"]
            for i, j in itertools.product(range(args.copies), repeat=2)}
  info = common.machine()
  print(f"{common.header(info)}  weights: {source}  method: {args.method}  copies: "
        f"{args.copies}  examples: {len(ids)}  rounds: {args.rounds}")
  print(common.format_table(rows, [("copy", "copy", ""), ("total_ms", "Σ ms (med)", ".1f"),
                                   ("first_half_ms", "rounds 1st half", ".1f"),
                                   ("second_half_ms", "2nd half", ".1f")]))
  spread = lambda v: max(v) / min(v) - 1  # noqa: E731
  summary = {
      "method_copy_spread": spread([total[f"{args.method}#{i}"] for i in range(args.copies)]),
      "verifier_copy_spread": spread([total[f"verifier#{i}"] for i in range(args.copies)]),
      "ratio_spread": spread(list(ratios.values())),
      "half_spread_max": max(abs(r["first_half_ms"] / r["second_half_ms"] - 1) for r in rows)}
  print(f"ratios {args.method}/verifier over copy pairs: {min(ratios.values()):.3f}-"
        f"{max(ratios.values()):.3f} (spread {100 * summary['ratio_spread']:.1f}%); between "
        f"copies: {args.method} {100 * summary['method_copy_spread']:.1f}%, verifier "
        f"{100 * summary['verifier_copy_spread']:.1f}%; one copy between halves of the "
        f"rounds: at most {100 * summary['half_spread_max']:.1f}%")
  report = {"machine": info, "args": vars(args), "weights": source, "rows": rows,
            "ratios": ratios, **summary}
  if args.json:
    common.write_json(args.json, report)
  return report


if __name__ == "__main__":
  main()
