"""Calibrated α of every rule on the bundled pair, checked on held-out examples.

    python benchmarks/calibration.py [--num-examples 800] [--num-calibration 600]
        [--json benchmarks/results/calibration.json]

`--num-examples` validation examples of the bundled corpus (spread over the
split, as the main job's), shuffled once (seed 0) into a calibration part and
a held-out part. For each rule of SpecCascade (γ = 5, greedy, 64 new tokens,
inputs cut at 48 tokens as in configs/demo.gin) and each target of TARGETS,
`scj.calibrate` picks α on the calibration part (δ = 0.1, the certified α
with the fewest verifier calls per token); the same α's mean loss, verifier
calls and drafter steps per token are then measured on the held-out part.
Both parts decode every α of GRIDS once (decoded rows are cached under
--cache-dir, so an interrupted run resumes and every ε reuses them).

The losses: "token", the share of output tokens that differ from the
verifier's greedy output; "chrf", the drop in sentence chrF (points) against
the verifier's own output on the example. n ≥ log δ / log(1 − ε) calibration
examples are needed to certify anything (risk.min_examples): 460 at 0.5
chrF points, 230 at 1 point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.decoding import methods  # noqa: E402
from spec_cascade_jax.evaluation import calibration, infer, risk  # noqa: E402

DELTA = 0.1
# (loss, ε in its units): the token share and the chrF drop in points.
TARGETS = (("token", 0.02), ("token", 0.05), ("token", 0.1),
           ("chrf", 0.5), ("chrf", 1.0), ("chrf", 2.0))
# α per rule, cautious → bold, fixed before any decoding: dense where the
# bundled pair still matches the verifier (docs/design.md: chow reaches the
# verifier's BLEU at 0.2; diff, opt and the token rules lose quality fast
# above 0.1), six points each.
GRIDS = {
    "chow": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    "diff": (-0.3, -0.1, 0.0, 0.05, 0.1, 0.2),
    "opt": (0.0, 0.05, 0.1, 0.25, 0.5, 1.0),
    "token_v1": (0.0, 0.01, 0.02, 0.05, 0.1, 0.2),
    "token_v2": (0.0, 0.01, 0.02, 0.05, 0.1, 0.2),
    "token_v3": (0.0, 0.02, 0.05, 0.1, 0.2, 0.3),
}
MAX_NEW_TOKENS = 64
MAX_INPUT_LENGTH = 48
NUM_DRAFT_TOKENS = 5


def run(num_examples: int, num_calibration: int, cache_dir: str, batch_size: int,
        on_rule=None) -> dict:
  """The report; `on_rule(report)` is called after each rule with the rows so far."""
  from spec_cascade_jax.models.loading import load_model
  drafter, verifier = load_model(common.DEMO.drafter), load_model(common.DEMO.verifier)
  data = infer.load_task(common.DEMO.corpus, "validation", common.DEMO.vocabulary,
                         MAX_INPUT_LENGTH, num_examples, models=(drafter, verifier))
  if not 0 < num_calibration < len(data):
    raise SystemExit(f"--num-calibration must lie in (0, {len(data)})")
  perm = np.random.default_rng(0).permutation(len(data))
  parts = {"calibration": perm[:num_calibration], "heldout": perm[num_calibration:]}
  vocab = types.SimpleNamespace(decode=data.decode)
  rows = []
  for rule in methods.RULES:
    for loss, eps in TARGETS:
      res = {}
      for part, idx in parts.items():
        res[part] = calibration.calibrate(
            drafter, verifier, [data.input_ids[i] for i in idx], method="spec_cascade",
            rule=rule, epsilon=eps, delta=DELTA, loss=loss, alphas=GRIDS[rule],
            references=[data.targets[i] for i in idx], vocabulary=vocab,
            max_new_tokens=MAX_NEW_TOKENS, num_draft_tokens=NUM_DRAFT_TOKENS,
            batch_size=batch_size, cache_path=os.path.join(cache_dir, f"{part}.json"))
      cal, held = res["calibration"], res["heldout"]
      at = {r.alpha: r for r in held.table}.get(cal.alpha)
      rows.append({"rule": rule, "loss": loss, "epsilon": eps, "alpha": cal.alpha,
                   "certified": list(cal.certified_alphas),
                   "calibration_loss": None if at is None else
                   {r.alpha: r for r in cal.table}[cal.alpha].loss_mean,
                   "heldout_loss": None if at is None else at.loss_mean,
                   "verifier_calls_per_token": None if at is None else
                   at.verifier_calls_per_token,
                   "drafter_steps_per_token": None if at is None else
                   at.drafter_steps_per_token,
                   "table": [dict(r.__dict__) for r in cal.table]})
      print(f"{rule} {loss} ε={eps:g}: α={cal.alpha}", flush=True)
    if on_rule is not None:
      on_rule(_report(rows, num_calibration, len(data)))
  return _report(rows, num_calibration, len(data))


def _report(rows, num_calibration, num_examples) -> dict:
  return {"pair": [common.DEMO.drafter, common.DEMO.verifier], "task": common.DEMO.corpus,
          "split": "validation", "num_calibration": num_calibration,
          "num_heldout": num_examples - num_calibration, "delta": DELTA,
          "grids": GRIDS, "max_new_tokens": MAX_NEW_TOKENS,
          "max_input_length": MAX_INPUT_LENGTH, "num_draft_tokens": NUM_DRAFT_TOKENS,
          "min_examples": {f"{loss} {eps:g}": risk.min_examples(
              eps / calibration.LOSS_BOUNDS[loss], DELTA) for loss, eps in TARGETS},
          "rows": rows, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def _f(x, fmt):
  return "—" if x is None else fmt.format(x)


def markdown(report: dict) -> str:
  """The BENCHMARKS.md table: one line per rule and target."""
  lines = ["| rule | loss (ε) | calibrated α | held-out loss | verifier calls / token "
           "| drafter steps / token |", "|---|---|---|---|---|---|"]
  for r in report["rows"]:
    what = ("token disagreement" if r["loss"] == "token" else "chrF drop, points") + \
        f" ({r['epsilon']:g})"
    alpha = "none certified" if r["alpha"] is None else f"{r['alpha']:g}"
    lines.append(f"| {r['rule']} | {what} | {alpha} | {_f(r['heldout_loss'], '{:.3f}')} | "
                 f"{_f(r['verifier_calls_per_token'], '{:.3f}')} | "
                 f"{_f(r['drafter_steps_per_token'], '{:.2f}')} |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--num-examples", type=int, default=800)
  ap.add_argument("--num-calibration", type=int, default=600)
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--cache-dir", default="runs/calibration_benchmark")
  ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results", "calibration.json"))
  args = ap.parse_args(argv)
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)

  def save(report):   # after every rule: a long run keeps what it has finished
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=1, ensure_ascii=False)
  report = run(args.num_examples, args.num_calibration, args.cache_dir, args.batch_size,
               on_rule=save)
  save(report)
  print(markdown(report))
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
