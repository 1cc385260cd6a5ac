"""Where a decoding round's time goes: a profiler trace grouped by phase.

Decodes validation examples (spread over the split, batch 1, one padded input
length so one compilation) with one method, traces the jitted calls with
`jax.profiler`, and sums the device-side durations of the traced operations
by the phase their HLO op belongs to. The phases are the kernel's named
scopes (decoding/kernel.py, baselines.py): encode, draft, verify, target,
accept, commit (speculative methods); step, sample (one-model decoding).
Model operations (the T5 module's) are listed apart from the kernel's own
work in the same phase. Prints µs per round (per verifier call for the
speculative methods, per token for one-model decoding) and the wall time per
round measured without the profiler.

    python benchmarks/round_profile.py --method speculative --num-draft-tokens 3
    python benchmarks/round_profile.py --method spec_cascade --rule token_v1 --alpha 0.2
    python benchmarks/round_profile.py --method verifier
    python benchmarks/round_profile.py --method prompt_lookup --num-draft-tokens 7 \
        --ngram-size 3
    python benchmarks/round_profile.py --pair t5 --num-draft-tokens 5 --examples 4 \
        --max-new-tokens 128

"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.decoding import api  # noqa: E402
from spec_cascade_jax.evaluation import grids  # noqa: E402

PHASES = ("encode", "draft", "verify", "target", "accept", "commit", "step", "sample")
_DEF = re.compile(r"\s*(?:ROOT )?%([\w.\-]+) = (.*)")
_NAME = re.compile(r'op_name="([^"]*)"')
_REF = re.compile(r"%([\w.\-]+)")


def op_phases(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> "phase/model", "phase/kernel" or "other" (outside
  the named phases: the while loop's bookkeeping, and per-call setup such as
  XLA:CPU's conversion of bf16 weights to float32 before the loop).

  Some instructions lose their metadata in XLA's passes (seen: the one-row
  dots of XLA:CPU); they take the phase of their first operand that has one.
  """
  out, operands = {}, {}
  for line in hlo_text.splitlines():
    m = _DEF.match(line)
    if not m:
      continue
    name, rest = m.groups()
    op = _NAME.search(rest)
    if op is None:
      operands[name] = _REF.findall(rest.split("metadata=")[0])
      continue
    parts = op.group(1).split("/")
    phase = next((p for p in parts if p in PHASES), "other")
    kind = "model" if any(p.startswith("T5Module") for p in parts) else "kernel"
    out[name] = phase if phase == "other" else f"{phase}/{kind}"
  for _ in range(4):  # chains of unnamed instructions
    for name, refs in operands.items():
      if name not in out:
        known = [out[r] for r in refs if r in out]
        if known:
          out[name] = known[0]
  return out


def counted(name: str, phases: dict[str, str]) -> bool:
  """Whether a trace event's op counts toward its phase. A while loop's or a
  conditional's own event ("while.N", "cond.N", "conditional.N") spans (part
  of) its body, whose ops are counted themselves."""
  return name in phases and not name.startswith(("while", "cond"))


def trace_durations(run, phases: dict[str, str]) -> dict[str, float]:
  """Runs `run()` under the profiler; µs during which each phase's ops ran.

  XLA:CPU runs independent ops on several threads at once, so per phase the
  union of its ops' time intervals is taken, not the sum of their durations.
  """
  tmp = tempfile.mkdtemp()
  jax.profiler.start_trace(tmp, create_perfetto_trace=True)
  run()
  jax.profiler.stop_trace()
  path = glob.glob(os.path.join(tmp, "**", "*.json.gz"), recursive=True)[0]
  with gzip.open(path, "rt") as f:
    events = json.load(f)
  events = events.get("traceEvents", events) if isinstance(events, dict) else events
  spans: dict = collections.defaultdict(list)
  for e in events:
    name = e.get("name", "")
    if e.get("ph") == "X" and counted(name, phases):
      spans[phases[name]].append((float(e["ts"]), float(e["ts"]) + float(e["dur"])))
  return {k: union_length(v) for k, v in spans.items()}


def loop_counts(stats, per_call: str) -> tuple[int, int]:
  """(loop iterations, tokens) over calls: a batch loops while any row is
  active and each row counts only its active rounds, so a call's iterations
  are the most any row counted."""
  rounds = sum(int(np.max(s[per_call])) for s in stats)
  return rounds, sum(int(np.sum(s["num_tokens"])) for s in stats)


def union_length(intervals) -> float:
  """Total length covered by (start, end) intervals."""
  total, end = 0.0, float("-inf")
  for a, b in sorted(intervals):
    if b > end:
      total += b - max(a, end)
      end = b
  return total


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--method", default="speculative", choices=api.METHODS)
  ap.add_argument("--rule", default="token_v1")
  ap.add_argument("--alpha", type=float, default=0.2)
  ap.add_argument("--num-draft-tokens", type=int, default=3, help="γ")
  ap.add_argument("--ngram-size", type=int, default=3, help="prompt_lookup's ngram_size")
  ap.add_argument("--temperature", type=float, default=0.0)
  ap.add_argument("--examples", type=int, default=16)
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--input-length", type=int, default=48)
  ap.add_argument("--batch", type=int, default=1,
                  help="rows per call: a round is then one loop iteration of the batch")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--pair", default="demo", choices=("demo", "t5"),
                  help="demo: the bundled pair on validation inputs; t5: T5-small -> "
                       "T5-large shapes, random bf16 weights and inputs (an accelerator)")
  ap.add_argument("--random-weights", action="store_true", help="demo pair only")
  ap.add_argument("--json", default=None, help="also write the table here")
  args = ap.parse_args(argv)

  if args.pair == "t5":  # accelerator shapes: random bf16 weights, EOS masked
    import gpu
    from spec_cascade_jax.testing import NoEos
    drafter, verifier = (NoEos(m) for m in gpu.t5_pair())
    source = "random t5-small -> t5-large, bf16, EOS masked"
    rs = np.random.RandomState(0)
    rows = [rs.randint(3, verifier.vocab_size, (args.batch, args.input_length))
            .astype(np.int32) for _ in range(max(args.examples // args.batch, 1))]
  else:
    drafter, verifier, source = common.demo_pair(random_weights=args.random_weights)
    exs = [ex["ids"] for ex in
           common.gettext_examples(args.examples, max_input_tokens=args.input_length)]
    rows = [common.pad_batch(exs[i:i + args.batch], length=args.input_length)
            for i in range(0, len(exs) - args.batch + 1, args.batch)]
  d, v, params, rng, statics = api.prepare(
      drafter, verifier, jnp.asarray(rows[0]), method=args.method,
      rule=args.rule if api.method_takes_rule(args.method) else None,
      alpha=args.alpha if api.method_takes_alpha(args.method) else None,
      num_draft_tokens=args.num_draft_tokens, temperature=args.temperature, top_k=0,
      top_p=1.0, max_new_tokens=args.max_new_tokens, rng=jax.random.PRNGKey(0),
      seq_confidence=None,
      ngram_size=args.ngram_size if api.method_takes(args.method, "ngram_size") else None)
  params = jax.tree.map(jnp.asarray, params)
  inputs = [jnp.asarray(r) for r in rows]
  call = lambda ids: api.jitted_decode(d, v, ids, params, rng, **statics)
  phases = op_phases(api.jitted_decode.lower(d, v, inputs[0], params, rng, **statics)
                     .compile().as_text())
  stats = [jax.device_get(common.block(call(ids))[1]) for ids in inputs]  # also compiles
  per_call = "rounds" if args.method in grids.SPECULATIVE_METHODS else "num_tokens"
  rounds, tokens = loop_counts(stats, per_call)
  run_all = lambda: [common.block(call(ids)) for ids in inputs]
  walls = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    run_all()
    walls.append(time.perf_counter() - t0)
  by_phase = trace_durations(run_all, phases)

  unit = "round" if per_call == "rounds" else "step"
  wall_us = 1e6 * min(walls) / rounds
  traced = sum(by_phase.values())
  table = [{"phase": k, "us": t / rounds, "share": t / traced}
           for k, t in sorted(by_phase.items(), key=lambda kv: -kv[1])]
  info = common.machine()
  print(f"{common.header(info)}  weights: {source}")
  print(f"# {args.method}" + (f"[{args.rule}] α={args.alpha}" if args.method in
                              ("spec_cascade", "token_cascade", "oracle_cascade") else "")
        + f" γ={args.num_draft_tokens} T={args.temperature}: {len(inputs)} batches of {args.batch},"
        f" {tokens} tokens,"
        f" {rounds} {unit}s ({tokens / rounds:.2f} tokens per {unit})")
  print(f"wall (no profiler, min of {args.repeats}): {wall_us:.0f} µs per {unit};"
        f" traced ops: {traced / rounds:.0f} µs per {unit}")
  print(common.format_table(table, [("phase", "phase", ""), ("us", f"µs/{unit}", ".1f"),
                                    ("share", "share", ".1%")]))
  if args.json:
    common.write_json(args.json, {"machine": info, "args": vars(args),
                                  "rounds": rounds, "tokens": tokens,
                                  f"wall_us_per_{unit}": wall_us, "phases": table})
  return table


if __name__ == "__main__":
  main()
