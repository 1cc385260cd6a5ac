"""Draft policies against the best fixed γ: counts and paired CPU latency.

For one pair and method (default: the bundled pair, lossless `speculative`,
greedy), on examples of the bundled corpus at batch 1:
  1. every fixed γ of --gammas: verifier calls and drafter steps per generated
     token, and latency paired with verifier-only decoding (interleaved,
     evaluation/latency.py); the fastest is "the best fixed γ";
  2. every policy setting (decoding/drafting.py) at γ max --max-gamma: the
     same counts, and latency paired with the best fixed γ (interleaved), so
     the ratio is policy / best fixed γ with its bootstrap interval.
Counts are machine-independent; latencies are this machine's.

    python benchmarks/draft_policies.py --json benchmarks/results/draft_policies.json
    python benchmarks/draft_policies.py --pair gemma2-random   # random Gemma-2-shaped LMs

With --json the rows are written as JSON, and the printed table beside it
(.txt).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from spec_cascade_jax.decoding import generate  # noqa: E402
from spec_cascade_jax.evaluation import latency  # noqa: E402
from spec_cascade_jax.models.loading import load_model  # noqa: E402

HEURISTICS = ({}, {"draft_schedule": (2, 1, 1)})


def _pad(ids, bucket: int = 16):
  width = -(-len(ids) // bucket) * bucket
  return jnp.asarray([list(ids) + [0] * (width - len(ids))], jnp.int32)


def gemma2_random_pair(examples: int):
  """The random Gemma-2-shaped pair of lm_vs_hf.py at its default sizes (the
  drafter is the verifier's first layer), built by transformers in a temp dir
  and loaded by us. Returns (drafter, verifier, its EOS id, prompts [1, S])."""
  import tempfile

  import lm_vs_hf
  args = lm_vs_hf.make_parser().parse_args(["--examples", str(examples)])
  with tempfile.TemporaryDirectory(prefix="hf_lm_pair_") as root:
    lm_vs_hf.build_pair(root, args)
    drafter, verifier = (load_model(os.path.join(root, n)) for n in ("drafter", "verifier"))
  prompts = lm_vs_hf.random_prompts(args)
  return drafter, verifier, lm_vs_hf.EOS, prompts


def counts(decode, inputs) -> dict:
  """Σ stats over the inputs -> verifier calls and drafter steps per token."""
  tot = {}
  for ids in inputs:
    for k, v in decode(ids).stats.items():
      tot[k] = tot.get(k, 0) + int(v.sum())
  tokens = max(tot["num_tokens"], 1)
  return {"verifier_calls_per_token": tot["rounds"] / tokens,
          "drafter_steps_per_token": tot["drafter_steps"] / tokens,
          "wasted_drafts_per_token": tot["wasted_drafts"] / tokens,
          "verified_tokens_per_round": tot["verified_tokens"] / max(tot["rounds"], 1),
          "tokens": tot["num_tokens"]}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--pair", default="bundled", choices=("bundled", "gemma2-random"))
  ap.add_argument("--method", default="speculative")
  ap.add_argument("--rule", default=None)
  ap.add_argument("--alpha", type=float, default=None)
  ap.add_argument("--examples", type=int, default=24)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--gammas", default="2,3,4,5,6")
  ap.add_argument("--max-gamma", type=int, default=8)
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--thresholds", default="0.2,0.4,0.6",
                  help="the confidence policy's thresholds")
  ap.add_argument("--cumulative-thresholds", default="0.05,0.1,0.2",
                  help="the cumulative policy's thresholds")
  ap.add_argument("--json", default=None)
  args = ap.parse_args(argv)

  kw = dict(method=args.method, max_new_tokens=args.max_new_tokens)
  if args.pair == "bundled":
    drafter, verifier, _ = common.demo_pair()
    inputs = [_pad(ex["ids"]) for ex in common.gettext_examples(args.examples)]
    extra = {}
  else:
    drafter, verifier, eos, prompts = gemma2_random_pair(args.examples)
    # BOS + random ids, right-padded with Gemma's pad id 0 to one width (one
    # compilation); the models read 0 as padding.
    width = max(map(len, prompts))
    inputs = [jnp.asarray([p + [0] * (width - len(p))], jnp.int32) for p in prompts]
    extra = {"eos_id": eos}
    kw["eos_id"] = eos
  if args.rule:
    kw["rule"] = args.rule
  if args.alpha is not None:
    kw["alpha"] = args.alpha
  dec = functools.partial(generate, drafter, verifier, **kw)
  ver = functools.partial(generate, None, verifier, method="verifier",
                          max_new_tokens=args.max_new_tokens, **extra)
  key = lambda ids: ids.shape  # noqa: E731

  rows = []
  print(f"{args.pair} pair, {args.method}, {len(inputs)} examples at batch 1, "
        f"{common.machine()}")
  for g in (int(x) for x in args.gammas.split(",")):
    fn = lambda ids, g=g: dec(ids, num_draft_tokens=g)  # noqa: E731
    row = {"setting": f"constant γ={g}", "gamma": g, **counts(fn, inputs)}
    t = latency.paired_times(fn, ver, inputs, args.repeats, key).summary()
    row.update(vs_verifier=t["relative_latency"],
               vs_verifier_interval=t["relative_latency_interval"])
    rows.append(row)
    print(row)
  best = min(rows, key=lambda r: r["vs_verifier"])
  best_fn = lambda ids: dec(ids, num_draft_tokens=best["gamma"])  # noqa: E731
  policies = ([("confidence", {"draft_threshold": float(t)})
               for t in args.thresholds.split(",")]
              + [("cumulative", {"draft_threshold": float(t)})
                 for t in args.cumulative_thresholds.split(",")]
              + [("heuristic", h) for h in HEURISTICS])
  for policy, settings in policies:
    fn = lambda ids, p=policy, s=settings: dec(  # noqa: E731
        ids, num_draft_tokens=args.max_gamma, draft_policy=p, **s)
    label = f"{policy} γ≤{args.max_gamma} " + " ".join(f"{k}={v}" for k, v in settings.items())
    row = {"setting": label.strip(), "gamma": args.max_gamma, "policy": policy, **settings,
           **counts(fn, inputs)}
    t = latency.paired_times(fn, best_fn, inputs, args.repeats, key).summary()
    row.update(vs_best_fixed=t["relative_latency"],
               vs_best_fixed_interval=t["relative_latency_interval"],
               drafter_steps_vs_best=row["drafter_steps_per_token"]
               / best["drafter_steps_per_token"],
               verifier_calls_vs_best=row["verifier_calls_per_token"]
               / best["verifier_calls_per_token"])
    rows.append(row)
    print(row)
  for r in rows:
    for key in ("vs_verifier", "vs_best_fixed"):
      if r.get(key) is not None:
        lo, hi = r[f"{key}_interval"]
        r[f"{key}_text"] = f"{r[key]:.3f} [{lo:.3f}, {hi:.3f}]"
  cols = [("setting", "setting", ""),
          ("verifier_calls_per_token", "verifier calls/token", ".3f"),
          ("drafter_steps_per_token", "drafter steps/token", ".3f"),
          ("verifier_calls_vs_best", "calls vs best", ".3f"),
          ("drafter_steps_vs_best", "steps vs best", ".3f"),
          ("vs_verifier_text", "latency / verifier [95%]", ""),
          ("vs_best_fixed_text", "latency / best fixed γ [95%]", "")]
  if args.json:
    common.write_json(args.json, {"pair": args.pair, "method": args.method,
                                  "best_fixed_gamma": best["gamma"], "rows": rows,
                                  "machine": common.machine(),
                                  "examples": len(inputs), "repeats": args.repeats})
  table = (f"# {args.pair} pair, {args.method}, {len(inputs)} examples at batch 1, "
           f"{args.repeats} repeats; best fixed γ = {best['gamma']}\n"
           + common.format_table(rows, cols))
  print(table)
  if args.json:
    with open(os.path.splitext(args.json)[0] + ".txt", "w", encoding="utf-8") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  main()
