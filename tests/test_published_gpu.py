"""BENCHMARKS.md's accelerator figures, against the results files they cite
(machinery and rules: tests/figures.py).
"""

from __future__ import annotations

import functools
import os
import re

from figures import (Checks, GPU, GPU_CMDBUF, NUMBER, ROOT, at, doc, load_json, md_table,
                     number)

def test_gpu():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Accelerator")
    name = "BENCHMARKS.md (Accelerator)"
    assert GPU in text and GPU_CMDBUF in text
    t5 = lambda *k: at(GPU, "pairs", "t5", *k)  # noqa: E731
    demo = lambda *k: at(GPU, "pairs", "demo", *k)  # noqa: E731
    bw = at(GPU, "copy_bandwidth_GBps") / 1000
    checks.claim(name, text, "{s} s wall (the second of two runs", s=at(GPU, "wall_s"))
    checks.claim(name, text, "moved **{tb} TB/s**", tb=bw)
    for row in md_table(text, ["batch", "tokens per call", "ms per call"]):
      step = functools.partial(t5, f"verifier_step_b{row['batch']}_k{row['tokens per call']}")
      where = f"{name}: T5-large table, batch {row['batch']}, {row['tokens per call']} tokens"
      checks.number(f"{where}, ms", number(row["ms per call"]), step("ms"))
      floor_header = next(h for h in row if h.startswith("floor at"))
      checks.number(f"{name}: T5-large table header", number(floor_header), bw)
      checks.number(f"{where}, floor", number(row[floor_header]), step("floor_ms"))
      mb = re.search(rf"\(({NUMBER}) MB\)", row[floor_header])
      if mb:
        checks.number(f"{where}, MB", mb.group(1), step("bytes") / 1e6)
      checks.number(f"{where}, × floor", row["× floor"], step("floor_ratio"))
      other = next(h for h in row if h.startswith("× floor at"))
      tbs = float(number(other))
      checks.number(f"{where}, {other}", row[other], step("ms") / (step("bytes") / (tbs * 1e9)))
    checks.claim(name, text, "took 1.96 ms per step at batch 1; ours takes {ms}", ms=t5(
        "verifier_step_b1_k1", "ms"))
    checks.claim(name, text,
                 "missed**, by {a}× against our measured floor and {b}× against 0.55 ms",
                 a=t5("verifier_step_b1_k1", "floor_ratio") / 3,
                 b=t5("verifier_step_b1_k1", "ms") / 0.55)
    stream = "/device:GPU:0/Stream #14(Compute)"
    prof = lambda pair, k: at(GPU, "pairs", pair, "profile_b1_k1", "threads", stream, k)  # noqa
    checks.claim(name, text, "{n} kernels per step, busy {pct}% of the step's span",
                 n=prof("t5", "events_per_step"),
                 pct=prof("t5", "busy_us_per_step") / prof("t5", "span_us_per_step") * 100)
    checks.claim(name, text, "measured {ms} ms: no change",
                 ms=at(GPU_CMDBUF, "pairs", "t5", "verifier_step_b1_k1", "ms"))
    top0 = lambda k: at(GPU, "pairs", "t5", "profile_b1_k1", "top", 0, k)  # noqa: E731
    assert top0("name").get().startswith("input_reduce_fusion"), top0("name").get()
    checks.claim(name, text, "{n} `input_reduce_fusion` kernels per step (6 per layer, {us} µs "
                 "in all)", n=top0("count") / at(GPU, "pairs", "t5", "profile_b1_k1", "steps"),
                 us=top0("us_per_step"))
    checks.claim(name, text, "chunk ({k6} ms) and a batch of 8 ({b8} ms)",
                 k6=t5("verifier_step_b1_k6", "ms"), b8=t5("verifier_step_b8_k1", "ms"))
    mv = lambda rows: at(GPU, "logits_matvec_us", str(rows))  # noqa: E731
    checks.claim(name, text, "takes {a} µs (6 rows: {b}, 8 rows: {c})", a=mv(1), b=mv(6),
                 c=mv(8))
    checks.claim(name, text, "({a} against {b} µs, below)", a=mv(1), b=mv(6))
    checks.claim(name, text, "(8 rows {b8} ms, a 6-token chunk {k6} ms, against {b1} ms",
                 b8=t5("verifier_step_b8_k1", "ms"), k6=t5("verifier_step_b1_k6", "ms"),
                 b1=t5("verifier_step_b1_k1", "ms"))
    checks.claim(name, text, "a round takes {r} ms against {m} ms of model calls timed alone ({g} "
                 "drafter steps of {d} ms", r=t5("ours_b1", "round_ms"),
                 m=t5("ours_b1", "round_models_ms"), g=at(GPU, "args", "gamma") + 1,
                 d=t5("drafter_step_b1_ms"))
    checks.claim(name, text, "**{a}% overhead** at batch 1 and {b}% at batch 8",
                 a=t5("ours_b1", "round_overhead") * 100, b=t5("ours_b8", "round_overhead") * 100)
    checks.claim(name, text, "Verifier-only decoding takes {a} ms per token against a {b} ms step "
                 "({pct}%", a=t5("ours_b1", "verifier_ms_per_token"),
                 b=t5("verifier_step_b1_k1", "ms"), pct=t5("ours_b1", "ar_overhead") * 100)
    rows = md_table(text, ["", "HF eager", "ours", "ratio"])
    sources = [
        (t5("hf", "greedy_ms_per_token"), t5("ours_b1", "verifier_ms_per_token")),
        (t5("hf", "assisted_ms_per_token"), t5("ours_b1", "spec_ms_per_token")),
        (demo("hf", "greedy_ms_per_token"), demo("ours_b1", "verifier_ms_per_token"))]
    assert len(rows) == len(sources)
    for row, (hf, ours) in zip(rows, sources):
      where = f"{name}: HF eager table, {row['']}"
      checks.number(f"{where}, HF eager", number(row["HF eager"]), hf)
      checks.number(f"{where}, ours", number(row["ours"]), ours)
      checks.number(f"{where}, ratio", number(row["ratio"]), hf / ours)
    checks.claim(name, text, "met** ({x}× at T5-large shapes)",
                 x=t5("hf", "greedy_ms_per_token") / t5("ours_b1", "verifier_ms_per_token"))
    checks.claim(name, text, "a verifier step takes {ms} ms at batch 1 (its {mb} MB floor is {us} "
                 "µs: {n} kernels per step, {busy} µs busy",
                 ms=demo("verifier_step_b1_k1", "ms"),
                 mb=demo("verifier_step_b1_k1", "bytes") / 1e6,
                 us=demo("verifier_step_b1_k1", "floor_ms") * 1000,
                 n=prof("demo", "events_per_step"), busy=prof("demo", "busy_us_per_step"))
    checks.claim(name, text, "the drafter step {ms} ms", ms=demo("drafter_step_b1_ms"))


def test_gpu_results_hold_only_what_gpu_py_writes():
  """Results files are written by scripts: every top-level field of a gpu.py
  results file is one that benchmarks/gpu.py writes."""
  with open(os.path.join(ROOT, "benchmarks/gpu.py"), encoding="utf-8") as f:
    source = f.read()
  for path in (GPU, GPU_CMDBUF):
    for key in load_json(path):
      assert f'"{key}"' in source, f"{path}: {key!r} is not a field benchmarks/gpu.py writes"
