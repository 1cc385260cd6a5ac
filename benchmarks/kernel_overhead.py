"""The decode loops' own work: each method's time per round with free models.

A free model (evaluation/loop_costs.py `FreeModel`) has a real vocabulary
size and costs almost nothing: its logits are one of four fixed rows, its
cache one int. A decode of two free models therefore times what the loop
itself does beyond its model calls:
the distributions over the vocabulary, the draws, the acceptance test and the
correction, the commit and the counters. The sweep prices this work for each point (its
loop costs); this script compares methods and vocabulary sizes side by side.
Batch 1, every decode running to max_new_tokens (the free models never emit
EOS, and drafter and verifier agree, so each round accepts every draft).

For each vocabulary size of --vocab, each method's µs per loop iteration (a
round of the speculative kernel, a token of one-model decoding): fastest and
median of --repeats calls, the methods interleaved.

    python benchmarks/kernel_overhead.py --json benchmarks/results/kernel_overhead.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from spec_cascade_jax.decoding import generate  # noqa: E402
from spec_cascade_jax.evaluation.loop_costs import free_model  # noqa: E402

# (label, generate kwargs). Greedy unless the label says T=1.
METHODS = (
    ("verifier", dict(method="verifier")),
    ("speculative", dict(method="speculative")),
    ("speculative T=1", dict(method="speculative", temperature=1.0)),
    ("speculative+heuristic", dict(method="speculative", draft_policy="heuristic")),
    ("spec_cascade[token_v3]", dict(method="spec_cascade", rule="token_v3", alpha=0.1)),
    ("spec_cascade[chow]", dict(method="spec_cascade", rule="chow", alpha=0.1)),
)


def measure(vocab: int, gamma: int, max_new_tokens: int, repeats: int) -> list[dict]:
  model = free_model(vocab)
  ids = np.full((1, 16), 5, np.int32)
  rng = jax.random.PRNGKey(0)
  fns, iters = {}, {}
  for label, kw in METHODS:
    fn = (lambda kw=kw: generate(model, model, ids, num_draft_tokens=gamma,
                                 max_new_tokens=max_new_tokens, rng=rng, **kw))
    stats = fn().stats
    n = int(stats["rounds"][0]) if kw["method"] != "verifier" else int(stats["num_tokens"][0])
    if int(stats["num_tokens"][0]) != max_new_tokens:
      raise RuntimeError(f"{label}: {int(stats['num_tokens'][0])} tokens, expected "
                         f"{max_new_tokens} (a free model emitted EOS?)")
    fns[label], iters[label] = fn, n
  times = common.interleaved_times(fns, repeats, warmup=False)
  return [{"vocab": vocab, "method": label, "iterations": iters[label],
           "us_per_iteration_min": 1e6 * min(t) / iters[label],
           "us_per_iteration_median": 1e6 * statistics.median(t) / iters[label]}
          for label, t in times.items()]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--vocab", default="800,8000,32000,256000",
                  help="comma-separated vocabulary sizes")
  ap.add_argument("--num-draft-tokens", type=int, default=5)
  ap.add_argument("--max-new-tokens", type=int, default=60)
  ap.add_argument("--repeats", type=int, default=30)
  ap.add_argument("--json", help="also write the rows here, and the table beside it (.txt)")
  args = ap.parse_args(argv)
  info = common.machine()
  rows = []
  for v in (int(x) for x in args.vocab.split(",")):
    rows += measure(v, args.num_draft_tokens, args.max_new_tokens, args.repeats)
  text = "\n".join([
      common.header(info),
      f"free models, batch 1, γ = {args.num_draft_tokens}, {args.max_new_tokens} tokens, "
      f"fastest and median of {args.repeats} (µs per round; per token for the verifier)",
      common.format_table(rows, [("vocab", "vocab", ""), ("method", "method", ""),
                                 ("iterations", "iterations", ""),
                                 ("us_per_iteration_min", "µs min", ".1f"),
                                 ("us_per_iteration_median", "µs median", ".1f")])])
  print(text)
  if args.json:
    common.write_json(args.json, {"machine": info, "args": vars(args), "rows": rows})
    with open(os.path.splitext(args.json)[0] + ".txt", "w", encoding="utf-8") as f:
      f.write(text + "\n")
  return rows


if __name__ == "__main__":
  main()
