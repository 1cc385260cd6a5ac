"""What would prompt-lookup (n-gram) drafting buy greedy speculative decoding here?

An estimate, not a measurement of built code. It replays the verifier's
greedy outputs on validation examples (spread over the split) round by round
and charges each round the step costs measured in this run:

  - drafter rounds: γ+1 drafter steps and a verifier chunk of γ+1; the round
    accepts the leading drafts on which the drafter's teacher-forced argmax
    equals the verifier's token (what lossless greedy decoding accepts);
  - lookup rounds: when the last n generated tokens occurred earlier in the
    output (or the input), the tokens that followed them (repeated, for a
    loop) are the draft: no drafter steps, one drafter chunk to keep its
    cache, and the verifier chunk;
  - with `verifier` as the fallback, rounds without a lookup match are plain
    verifier steps (one token each).
Every round also pays --kernel-ms of the kernel's own work (sampling,
acceptance, commit: `round_profile.py` measured ~0.3 ms per round here).
Verifier-only decoding is charged one step per token. The drafter-only
policy is the calibration: compare it with `speed.py`'s measured ratio.

    python benchmarks/lookup_estimate.py --examples 16
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.evaluation import translation  # noqa: E402
from spec_cascade_jax.decoding.greedy import greedy_ids  # noqa: E402


def lookup(generated: list[int], source: list[int], n: int, gamma: int):
  """γ tokens that followed the latest earlier occurrence of the last n tokens
  (in the output, else the input), repeated cyclically; None without a match."""
  if len(generated) < n:
    return None
  key = generated[-n:]
  for hay, stop in ((generated, len(generated) - n - 1), (source, len(source) - n)):
    for j in range(stop, -1, -1):
      if hay[j:j + n] == key and j + n < len(hay):
        cont = hay[j + n:]
        return [cont[t % len(cont)] for t in range(gamma)]
  return None


def replay(outputs, sources, agree, costs, policy: str, n: int, gamma: int,
           kernel_ms: float) -> float:
  """Estimated ms of `policy` over all outputs (see the module docstring)."""
  total = 0.0
  chunk = costs["chunk"][gamma + 1]
  for out, src, ok in zip(outputs, sources, agree):
    t = 0
    while t < len(out):
      prop = None if policy == "drafter" else lookup([0] + out[:t], src, n, gamma)
      if prop is not None:
        acc = 0
        while acc < gamma and t + acc < len(out) and prop[acc] == out[t + acc]:
          acc += 1
        total += chunk + costs["drafter_chunk"] + kernel_ms
      elif policy == "lookup+verifier":
        acc = 0
        total += costs["verifier"]
      else:
        acc = 0
        while acc < gamma and t + acc < len(out) and ok[t + acc]:
          acc += 1
        total += (gamma + 1) * costs["drafter"] + chunk + kernel_ms
      t += acc + 1
  return total


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--examples", type=int, default=16)
  ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
  ap.add_argument("--num-draft-tokens", type=ints, default=[3, 5, 7],
                  help="γ values, comma-separated")
  ap.add_argument("--ngram-size", type=ints, default=[1, 2, 3],
                  help="n-gram sizes n, comma-separated")
  ap.add_argument("--kernel-ms", type=float, default=0.3)
  ap.add_argument("--repeats", type=int, default=5)
  common.add_demo_pair_flag(ap)
  args = ap.parse_args(argv)

  drafter, verifier, source = common.demo_pair(pair=args.demo_pair)
  examples = common.gettext_examples(args.examples, pair=args.demo_pair)
  sources = [ex["ids"] for ex in examples]
  outputs = greedy_ids(verifier, sources, max_new_tokens=64)
  agree = translation.drafter_hits(drafter, sources, outputs)
  ids = jnp.asarray(common.pad_batch([sources[0]]))
  ms = lambda m, k: 1e3 * common.step_time(m, ids, k, 72, 64, args.repeats)
  ks = sorted({g + 1 for g in args.num_draft_tokens})
  costs = {"drafter": ms(drafter, 1), "verifier": ms(verifier, 1),
           "chunk": {k: ms(verifier, k) for k in ks}}
  costs["drafter_chunk"] = ms(drafter, max(ks))
  base = sum(len(o) for o in outputs) * costs["verifier"]
  print(f"{common.header(common.machine())}  weights: {source}")
  print(f"# {len(outputs)} examples, {sum(map(len, outputs))} verifier tokens"
        f" ({sum(len(o) == 64 for o in outputs)} outputs run to 64), drafter agreement"
        f" {np.mean(np.concatenate(agree)):.3f}; step ms: drafter {costs['drafter']:.3f},"
        f" verifier {costs['verifier']:.3f}, chunks "
        + ", ".join(f"k={k} {v:.3f}" for k, v in costs["chunk"].items()))
  rows = []
  for gamma in args.num_draft_tokens:
    rows.append({"policy": "drafter (calibration)", "n": "-", "gamma": gamma, "x": base /
                 replay(outputs, sources, agree, costs, "drafter", 0, gamma, args.kernel_ms)})
    for n in args.ngram_size:
      for policy in ("lookup+drafter", "lookup+verifier"):
        est = replay(outputs, sources, agree, costs, policy, n, gamma, args.kernel_ms)
        rows.append({"policy": policy, "n": n, "gamma": gamma, "x": base / est})
  print(common.format_table(rows, [("policy", "policy", ""), ("n", "n", ""),
                                   ("gamma", "γ", ""), ("x", "est. × vs verifier", ".2f")]))


if __name__ == "__main__":
  main()
