"""CPU speed of every decoding method, side by side in one run.

The bundled pair (the main job's) on its own corpus.

One table per temperature (greedy, and T = 1 by default):
  - latency: per-example wall time at batch 1 (compile excluded, min / median
    over repeats, methods interleaved), summed over the examples, and the
    speed-up over verifier-only decoding measured in the same run;
  - tokens per verifier call (Σ generated tokens / Σ verifier calls) and the
    acceptance rate (Σ accepted drafts / Σ drafts) of the speculative methods;
  - throughput (generated tokens per second) at batch 8 and 32;
  - compile time (first call minus a steady call, batch 1);
  - greedy only: examples whose output differs from verifier-only decoding
    (must be 0 for lossless speculative decoding).

Methods: verifier, drafter, speculative for each γ of --num-draft-tokens,
prompt lookup (`method="prompt_lookup"`, no drafter) for each γ of
--lookup-num-draft-tokens with --lookup-ngram-size, and spec_cascade (γ:
--cascade-num-draft-tokens) for
each --cascade RULE=ALPHA (default: a sensible α per rule), or, with
--sweep-json, for each rule the largest α whose BLEU reaches the verifier's
(larger α defers less for every rule, so it is the fastest such α).

    python benchmarks/speed.py                        # bundled pair, 32 examples
    python benchmarks/speed.py --examples 8 --repeats 1 --batches 8 --temperatures 0
    python benchmarks/speed.py --sweep-json results/sweep.json --json out/speed.json
    python benchmarks/speed.py --sweep-json docs/demo/summary.json   # the main job's α

All inputs of a batch size share one padded length (the longest selected
example, rounded up to 16) so that each method compiles once per batch size.
With --length-bucket B, batch-1 inputs are padded to their own multiple of B
instead (as a server with length buckets would): the encoders then skip most
of the padding, at one compile per bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.decoding import generate  # noqa: E402
from spec_cascade_jax.evaluation import grids  # noqa: E402

DEFAULT_CASCADES = {"token_v3": 0.3, "chow": 0.4, "opt": 0.5}


def _alphas_from_summary(path: str, data: dict) -> dict[str, float]:
  """{rule: matched α} of the greedy table of a sweep's summary.json."""
  table = next((t for t in data["tables"] if t.get("temperature") == 0.0), data["tables"][0])
  out = {}
  for r in table["rows"]:
    if r.get("method") == "spec_cascade" and r.get("matched_alpha") is not None:
      out[r["curve"].split("[", 1)[1].rstrip("]")] = float(r["matched_alpha"])
  if not out:
    raise ValueError(f"No SpecCascade curve of {path} reaches the verifier's quality; pass "
                     "--cascade RULE=ALPHA instead.")
  return out


def alphas_from_sweep(path: str, tolerance: float) -> dict[str, float]:
  """{rule: largest α with BLEU ≥ verifier BLEU − tolerance} from a sweep JSON.

  The file holds a list of rows (or {"rows": [...]}) with "method", "bleu"
  and, for spec_cascade rows, "rule" and "alpha"; one row has method "verifier".
  A sweep's summary.json (`python -m spec_cascade_jax.main ...` writes it) is
  read too: each SpecCascade curve's α matched to the verifier's quality.
  """
  with open(path) as f:
    data = json.load(f)
  if isinstance(data, dict) and "tables" in data:
    return _alphas_from_summary(path, data)
  rows = data["rows"] if isinstance(data, dict) else data
  ver = [r["bleu"] for r in rows if r.get("method") == "verifier"]
  if not ver:
    raise ValueError(f"{path} has no row with method 'verifier' (its BLEU is the bar).")
  bar = ver[0] - tolerance
  best: dict[str, float] = {}
  for r in rows:
    if r.get("method") == "spec_cascade" and r["bleu"] >= bar:
      best[r["rule"]] = max(best.get(r["rule"], -np.inf), float(r["alpha"]))
  if not best:
    raise ValueError(f"No spec_cascade row of {path} reaches the verifier's BLEU {ver[0]:.2f}"
                     f" (tolerance {tolerance}); pass --cascade RULE=ALPHA instead.")
  return best


def settings(args) -> list[dict]:
  out = [dict(label="verifier", method="verifier"), dict(label="drafter", method="drafter")]
  for g in args.num_draft_tokens:
    out.append(dict(label=f"speculative γ={g}", method="speculative", num_draft_tokens=g))
  for g in args.lookup_num_draft_tokens:
    out.append(dict(label=f"prompt lookup n={args.lookup_ngram_size} γ={g}",
                    method="prompt_lookup", num_draft_tokens=g,
                    ngram_size=args.lookup_ngram_size))
  if args.sweep_json:
    cascades = alphas_from_sweep(args.sweep_json, args.bleu_tolerance)
  elif args.cascade:
    cascades = {}
    for item in args.cascade:
      rule, _, alpha = item.partition("=")
      cascades[rule] = float(alpha)
  else:
    cascades = DEFAULT_CASCADES
  for rule, alpha in cascades.items():
    for g in args.cascade_num_draft_tokens:
      out.append(dict(label=f"spec_cascade[{rule}] α={alpha:g} γ={g}",
                      method="spec_cascade", rule=rule, alpha=alpha, num_draft_tokens=g))
  return out


def _caller(drafter, verifier, ids, s: dict, temperature: float, max_new: int):
  kw = {k: v for k, v in s.items() if k != "label"}
  rng = jax.random.PRNGKey(1)
  return lambda: generate(drafter, verifier, ids, temperature=temperature,
                          max_new_tokens=max_new, rng=rng, **kw)


def batch1_inputs(examples, length_bucket: int = 0) -> list:
  """[1, S] inputs: all padded to the longest (rounded up to 16), or with
  `length_bucket` each to its own multiple of it."""
  if length_bucket:
    return [common.pad_batch([e["ids"]], multiple=length_bucket) for e in examples]
  length = common.pad_batch([e["ids"] for e in examples]).shape[1]
  return [common.pad_batch([e["ids"]], length) for e in examples]


def batch1(drafter, verifier, examples, sets, temperature, args) -> list[dict]:
  inputs = batch1_inputs(examples, args.length_bucket)
  rows = [dict(label=s["label"], method=s["method"], time_min=0.0, time_median=0.0,
               tokens=0, rounds=0, accepted=0, drafts=0, mismatches=0) for s in sets]
  # Compile time: first call minus a steady call, same input; then every other
  # input shape is compiled before timing.
  for r, s in zip(rows, sets):
    fn = _caller(drafter, verifier, inputs[0], s, temperature, args.max_new_tokens)
    first = common.first_call_seconds(fn)
    r["compile_s"] = max(first - min(common.interleaved_times({"x": fn}, 2, False)["x"]), 0.0)
    for shape in sorted({x.shape for x in inputs} - {inputs[0].shape}):
      _caller(drafter, verifier, next(x for x in inputs if x.shape == shape), s,
              temperature, args.max_new_tokens)()
  for ids in inputs:
    fns = {s["label"]: _caller(drafter, verifier, ids, s, temperature, args.max_new_tokens)
           for s in sets}
    results = {k: fn() for k, fn in fns.items()}
    times = common.interleaved_times(fns, args.repeats, warmup=False)
    ref = results["verifier"].tokens
    for r in rows:
      res, t = results[r["label"]], times[r["label"]]
      r["time_min"] += min(t)
      r["time_median"] += float(np.median(t))
      r["tokens"] += int(res.stats["num_tokens"].sum())
      r["rounds"] += int(res.stats["rounds"].sum())
      r["accepted"] += int(res.stats["accepted"].sum())
      r["drafts"] += int(res.stats["draft_tokens"].sum())
      if temperature == 0:
        r["mismatches"] += int(not np.array_equal(res.tokens, ref))
  base = rows[0]
  for r in rows:
    r["speedup_min"] = base["time_min"] / r["time_min"]
    r["speedup_median"] = base["time_median"] / r["time_median"]
    r["ms_per_example"] = 1e3 * r["time_median"] / len(inputs)
    if r["method"] in grids.SPECULATIVE_METHODS:
      r["tokens_per_call"] = r["tokens"] / max(r["rounds"], 1)
      r["acceptance"] = r["accepted"] / r["drafts"] if r["drafts"] else None
    if temperature != 0:
      r["mismatches"] = None
  return rows


def throughput(drafter, verifier, examples, sets, temperature, batch: int, args):
  """{label: generated tokens per second} over ceil(n / batch) batches."""
  rows = [e["ids"] for e in examples]
  while len(rows) < batch:          # fewer examples than one batch: repeat them
    rows = rows + rows
  rows = rows[:max(batch, len(rows) - len(rows) % batch)]
  length = common.pad_batch(rows).shape[1]
  batches = [common.pad_batch(rows[i:i + batch], length) for i in range(0, len(rows), batch)]
  fns = {s["label"]: [_caller(drafter, verifier, b, s, temperature, args.max_new_tokens)
                      for b in batches] for s in sets}
  tokens = {k: sum(int(f().stats["num_tokens"].sum()) for f in fs) for k, fs in fns.items()}
  times = common.interleaved_times({k: (lambda fs=fs: [f() for f in fs]) for k, fs in fns.items()},
                                   args.repeats, warmup=False)
  return {k: tokens[k] / min(times[k]) for k in fns}, {k: tokens[k] / float(np.median(times[k]))
                                                      for k in fns}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--examples", type=int, default=32, help="validation examples")
  ap.add_argument("--max-input-tokens", type=int, default=48)
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--length-bucket", type=int, default=0,
                  help="batch 1: pad each input to a multiple of this many tokens (one "
                       "compile per length) instead of all to the longest")
  ap.add_argument("--repeats", type=int, default=3)
  ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
  ap.add_argument("--num-draft-tokens", type=ints, default=[3, 5, 7],
                  help="speculative decoding's num_draft_tokens (γ), comma-separated "
                       "('' for none)")
  ap.add_argument("--lookup-num-draft-tokens", type=ints, default=[7],
                  help="prompt lookup's num_draft_tokens, comma-separated ('' for none)")
  ap.add_argument("--lookup-ngram-size", type=int, default=3, help="prompt lookup's ngram_size")
  ap.add_argument("--cascade", action="append", metavar="RULE=ALPHA",
                  help="spec_cascade setting(s); default token_v3=0.3 chow=0.4 opt=0.5")
  ap.add_argument("--cascade-num-draft-tokens", type=ints, default=[5],
                  help="the cascades' num_draft_tokens, comma-separated (greedy outputs do "
                       "not depend on γ, so BLEU holds for each)")
  ap.add_argument("--sweep-json", help="pick α per rule from a BLEU sweep (see alphas_from_sweep)")
  ap.add_argument("--bleu-tolerance", type=float, default=0.0)
  ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",") if x],
                  default=[8, 32], help="batch sizes for throughput ('' for none)")
  ap.add_argument("--temperatures", type=lambda s: [float(x) for x in s.split(",")],
                  default=[0.0, 1.0])
  ap.add_argument("--random-weights", action="store_true",
                  help="random weights of the bundled shapes (per-call costs only)")
  ap.add_argument("--json", help="also write the results here")
  args = ap.parse_args(argv)

  drafter, verifier, source = common.demo_pair(args.random_weights)
  examples = common.gettext_examples(args.examples, max_input_tokens=args.max_input_tokens)
  sets = settings(args)
  info = common.machine()
  print(f"{common.header(info)}  weights: {source}  examples: {len(examples)}  "
        f"max_new_tokens: {args.max_new_tokens}  repeats: {args.repeats}")
  report = {"machine": info, "args": vars(args), "weights": source, "tables": {}}
  for temp in args.temperatures:
    rows = batch1(drafter, verifier, examples, sets, temp, args)
    for b in args.batches:
      best, med = throughput(drafter, verifier, examples, sets, temp, b, args)
      for r in rows:
        r[f"tok_s_b{b}"] = med[r["label"]]
        r[f"tok_s_b{b}_best"] = best[r["label"]]
        r[f"x_b{b}"] = med[r["label"]] / med["verifier"]
    cols = [("label", "method", ""), ("ms_per_example", "ms/ex (med)", ".1f"),
            ("speedup_median", "× (med)", ".2f"), ("speedup_min", "× (min)", ".2f"),
            ("tokens_per_call", "tok/call", ".2f"), ("acceptance", "accept", ".2f"),
            ("mismatches", "≠verif", "")]
    for b in args.batches:
      cols += [(f"tok_s_b{b}", f"tok/s b{b}", ".0f"), (f"x_b{b}", f"× b{b}", ".2f")]
    cols.append(("compile_s", "compile s", ".1f"))
    print(f"\n## temperature {temp:g}, batch-1 latency over {len(examples)} examples "
          "(speed-ups vs verifier, same run)")
    print(common.format_table(rows, cols))
    report["tables"][f"T={temp:g}"] = rows
  if args.json:
    common.write_json(args.json, report)
  return report


if __name__ == "__main__":
  main()
