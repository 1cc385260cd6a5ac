"""The trade-off sweep: quality and relative latency of every method over α.

    python -m spec_cascade_jax.main --gin_file=configs/demo.gin        # reduced
    python -m spec_cascade_jax.main --gin_file=configs/runs/sweep.gin \
        --gin_file=configs/models/t5_small_large.gin ...              # the paper's

For each point (method, rule, α, γ, temperature, seed; grids.py):
  quality  the task's metrics on the whole split (or `num_quality_examples`
           spread over it), decoded in batches;
  latency  seconds per example at batch 1 on `num_latency_examples` spread
           over the split, each example timed paired with verifier-only
           decoding and interleaved with it (evaluation/latency.py): the
           relative latency is Σ point / Σ verifier, with a bootstrap interval
           over examples (docs/design.md §6.1).
Every point's quality comes first; then the latency examples are timed in a
round-robin: every pending point's pairs of the first example, then of the
second, the points' order turning by one from example to example. Each
point's timings are thus spread over the whole latency phase, as are the
step and loop costs that price it: a point no longer meets only the
machine's speed of the minutes it happened to be timed in (which moved a
point timed alone by up to ~25% against its prediction on the 2-core CPU),
and every point meets the same mixture.

Results file (`output_dir/results.jsonl`, one JSON object a line, appended and
fsync'ed as each point's record is complete; evaluation/results.py reads and
writes it):
  {"kind": "sweep", "context": {...}}       first line: what every point shares
  {"kind": "copy_baseline", "quality", ...} what copying the input scores
  {"kind": "point", "key", "run_id", <Point fields>, "quality", "cost",
   "latency_s", "verifier_latency_s", "relative_latency",
   "relative_latency_interval", "example_ratio_quartiles",
   "predicted_relative_latency", "machine", ...}
The point's predicted relative latency is the cost model's
(evaluation/cost_model.py): the counts of its timed decodes priced by this
machine's step costs ("step_costs", per length bucket), timed among the
point's own pairs, one round of the step-cost programs after each example's
(evaluation/step_costs.py; the median over the examples), so that they meet
the load the decodes met, and by each side's loop cost ("loop_costs": the
loop's own work, timed likewise with free models; evaluation/loop_costs.py).
"modelled_latency_s" and
"verifier_modelled_latency_s" are the model's seconds per example beside the
measured "latency_s" and "verifier_latency_s". Where measured exceeds
modelled, the decode spends time beyond its model calls. "counts" keeps the
timed decodes' counts per example: the summary prices every point again at
the run's median step costs (summary.pooled_predictions).
Greedy points also keep "per_example" (calibration.sweep_losses): each
example's sentence chrF, and the verifier point's output tokens or, for the
others, each example's token disagreement with them; the summary calibrates α
on half of the examples and checks it on the other half
(calibration.calibrate_sweep). Records without it get no calibrated row.

Work in progress (`output_dir/progress.jsonl`, same format, same context
line): {"kind": "quality", "key", ...} as each point's quality is scored, and
{"kind": "timing", "example": i, "entries": {key: ...}} as each latency
example is timed for every pending point (infer.PointTimer.time_example).

Resuming. A rerun with the same context skips every point whose key is in the
results file, and of the others it decodes only the points with no quality
line and times only the (point, example) pairs with no timing entry; an
interrupted write leaves a truncated line, which is ignored. Each example's
pair is its own ratio (paired, same example, same seconds), so timings taken
by different process runs, even on a machine under other load, combine;
`run_id` and `machine` record where each record was completed. A rerun with a
different context (task, models, examples, lengths, latency protocol) is
refused rather than mixed in.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

from spec_cascade_jax.evaluation import (calibration, cost_model, grids, infer, latency,
                                         loop_costs, step_costs, summary)
# The results file's format lives in results.py (plots.py reads it too); its
# names stay importable from here.
from spec_cascade_jax.evaluation.results import (RESULTS_FILE, ResultsFile,  # noqa: F401
                                                 load_results)

# Steps per step-cost program (evaluation/step_costs.py): near the rounds of
# one decode (5 to 13 on the bundled pair at 64 new tokens), so that each
# program's fixed cost beyond the encoder weighs about as it does in a decode.
STEP_COST_INNER = 8
# Recorded in the context: results timed under another protocol are not mixed in.
LATENCY_PROTOCOL = "paired-interleaved-round-robin-v2"
# Work done on points whose record is not written yet (module docstring).
PROGRESS_FILE = "progress.jsonl"


def _check_context(stored: dict, context: dict, path: str) -> None:
  diff = {k: (stored.get(k), v) for k, v in context.items() if stored.get(k) != v}
  if diff:
    raise ValueError(
        f"{path} holds a sweep with other settings (stored, now): {diff}. Its points are "
        "not comparable with this run's; use another output_dir, or the same settings to "
        "resume it.")


def _name(model) -> str:
  if isinstance(model, (str, os.PathLike)):
    return os.fspath(model)
  cfg = getattr(model, "config", None)
  return getattr(cfg, "name", type(model).__name__)


def run_sweep(drafter="demo-drafter", verifier="demo-verifier", output_dir: str = "runs/sweep",
              task: str = infer.GETTEXT_TASK, split: str = "validation",
              grid: str | Sequence[grids.Curve] = "demo", curves: Sequence[str] | None = None,
              alphas: Mapping[str, Sequence[float]] | None = None,
              draft_thresholds: Mapping[str, Sequence[float]] | None = None,
              num_draft_tokens: int = 5, temperatures: Sequence[float] = (0.0,),
              seeds: Sequence[int] = (0, 1, 2), num_quality_examples: int | None = None,
              num_latency_examples: int = 20, repeats: int = 3, batch_size: int = 64,
              max_new_tokens: int = 64, max_input_length: int = 128,
              buckets: Sequence[int] = infer.DEFAULT_BUCKETS, vocabulary: str = "gettext",
              t5_vocab_path: str | None = None, metric: str | None = None,
              make_plots: bool = True,
              on_point: Callable[[dict], Any] | None = None) -> dict:
  """Runs (or resumes) a sweep; writes results, summary and plots in `output_dir`.

  Args:
    drafter, verifier: model objects, bundled names or checkpoint paths.
    grid / curves / alphas / draft_thresholds: which curves, α and draft-policy
      thresholds (grids.select_curves); a "+confidence" curve crosses its
      thresholds with its α.
    temperatures, seeds: seeds are used at temperature > 0 only; the summary
      reports their mean and spread.
    num_quality_examples: None = the whole split.
    num_latency_examples: batch-1 timing subset (spread over the split).
    buckets: input length buckets (one compilation per method and bucket).
    metric: the quality metric of the summary/plots; None picks bleu, else
      rouge2, else the first one.
    on_point: called with each point record after it is saved (progress hooks).

  Returns:
    the summary (summary.summarize) of every point in the results file.
  """
  from tqdm.auto import tqdm
  infer.check_task(task, t5_vocab_path)   # an unknown task fails before any work
  if num_latency_examples < 1 or repeats < 1:
    raise ValueError(f"a sweep times every point: num_latency_examples and repeats must "
                     f"be >= 1; got {num_latency_examples} and {repeats}. For quality "
                     "alone, use the eval job (configs/runs/eval.gin).")
  chosen = grids.select_curves(grid, curves, alphas, draft_thresholds)
  points = grids.build_points(chosen, num_draft_tokens, temperatures, seeds)
  results = ResultsFile(os.path.join(output_dir, RESULTS_FILE))
  context = {"task": task, "split": split, "drafter": _name(drafter),
             "verifier": _name(verifier), "num_quality_examples": num_quality_examples,
             "num_latency_examples": num_latency_examples, "repeats": repeats,
             "max_new_tokens": max_new_tokens, "max_input_length": max_input_length,
             "buckets": list(buckets), "vocabulary": vocabulary,
             "latency_protocol": LATENCY_PROTOCOL}
  stored = results.context()
  if stored is None:
    results.append({"kind": "sweep", "context": context,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")})
  else:
    _check_context(stored, context, results.path)
  done = results.done_keys()
  pending = [p for p in points if p.key not in done]
  print(f"sweep: {len(points)} points, {len(points) - len(pending)} already in "
        f"{results.path}, {len(pending)} to run")

  if pending:
    progress = ResultsFile(os.path.join(output_dir, PROGRESS_FILE))
    if progress.context() is None:
      progress.append({"kind": "sweep", "context": context})
    else:
      _check_context(progress.context(), context, progress.path)
    _run_points(pending, results, progress, drafter, verifier, task, split, vocabulary,
                max_input_length, num_quality_examples, num_latency_examples, repeats,
                batch_size, max_new_tokens, buckets, t5_vocab_path, on_point, tqdm)

  records = results.points()
  keys = {p.key for p in points}
  records = [r for r in records if r["key"] in keys]  # this grid's points only
  out = summary.summarize(records, metric, copy_quality=results.copy_baseline())
  print(summary.format_markdown(out))
  summary.save(out, output_dir)
  if make_plots:
    try:
      from spec_cascade_jax.evaluation import plots
    except ImportError as e:
      print(f"no plots ({e}); pip install matplotlib, then: python -m "
            f"spec_cascade_jax.evaluation.plots {results.path}")
    else:
      for path in plots.plot_all(records, output_dir, out["metric"], results.context()):
        print(f"wrote {path}")
  return out


def _run_points(pending, results, progress, drafter, verifier, task, split, vocabulary,
                max_input_length, num_quality_examples, num_latency_examples, repeats,
                batch_size, max_new_tokens, buckets, t5_vocab_path, on_point, tqdm):
  q_model, p_model = infer.resolve_model(drafter), infer.resolve_model(verifier)
  data = infer.load_task(task, split, vocabulary, max_input_length, num_quality_examples,
                         t5_vocab_path, models=(q_model, p_model))
  lat_ids = data.subset(infer.spread_indices(len(data), num_latency_examples)).input_ids
  if results.copy_baseline() is None:
    # What copying the input scores: software messages keep names, numbers and
    # placeholders, so a model must beat this by a margin to be translating.
    results.append({"kind": "copy_baseline", "quality": infer.score(data, data.inputs),
                    "num_quality_examples": len(data)})
  run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
  machine = latency.machine()
  stored = progress.read()
  quality = {r["key"]: r for r in stored if r.get("kind") == "quality"}
  # The greedy verifier's outputs: each greedy point's token losses are taken
  # against them (the summary's calibrated α; calibration.calibrate_sweep).
  ver_tokens = calibration.sweep_verifier_tokens(results.points() + list(quality.values()))
  todo = [p for p in pending if p.key not in quality]
  for point in tqdm(todo, desc="quality") if todo else ():
    t0 = time.perf_counter()
    tokens, stats = infer.decode_batched(q_model, p_model, data.input_ids, point,
                                         batch_size, max_new_tokens, buckets, progress=True)
    predictions = [data.decode(t) for t in tokens]
    per_example = None
    if point.temperature == 0:
      per_example = calibration.sweep_losses(point.method, tokens, predictions, data.targets,
                                             ver_tokens)
      ver_tokens = tokens if point.method == "verifier" else ver_tokens
    quality[point.key] = {"kind": "quality", "key": point.key, **dataclasses.asdict(point),
                          "quality": infer.score(data, predictions),
                          "cost": infer.cost_stats(stats, point.method),
                          "per_example": per_example, "num_quality_examples": len(data),
                          "seconds": time.perf_counter() - t0}
    progress.append(quality[point.key])

  # Latency: every pending point's pairs of one example, then the next
  # example's, the points' order rotating (module docstring).
  lat_lengths = [infer.bucket_length(len(x), buckets) for x in lat_ids]
  programs = {n: step_costs.programs(q_model, p_model, input_length=n,
                                     max_new_tokens=max_new_tokens,
                                     num_draft_tokens=max(p.num_draft_tokens for p in pending),
                                     inner=STEP_COST_INNER)
              for n in sorted(set(lat_lengths))}
  timers = {}
  for point in pending:
    method_kw, ver_kw = infer.paired_kwargs(point, max_new_tokens)
    free = loop_costs.programs({"method": ("both", method_kw),
                                "verifier": ("verifier", ver_kw)}, p_model, point.seed)
    timers[point.key] = infer.PointTimer(q_model, p_model, lat_ids, point, max_new_tokens,
                                         buckets, repeats, programs, free)
  entries: dict[str, dict[int, dict]] = {p.key: {} for p in pending}
  for r in stored:
    if r.get("kind") == "timing":
      for key, entry in r["entries"].items():
        if key in entries:
          entries[key][r["example"]] = entry
  for i in tqdm(range(len(lat_ids)), desc="latency (every point, example by example)"):
    turn = i % len(pending)
    order = [p for p in pending[turn:] + pending[:turn] if i not in entries[p.key]]
    if not order:
      continue
    with latency.gc_paused():
      timed = {p.key: timers[p.key].time_example(i) for p in order}
    progress.append({"kind": "timing", "example": i, "entries": timed})
    for key, entry in timed.items():
      entries[key][i] = entry

  for point in pending:
    own = [entries[point.key][i] for i in range(len(lat_ids))]
    counts: dict = {}
    timed = timers[point.key].finish(own, counts)
    costs, loops = counts["step_costs"], counts["loop_costs"]
    modelled = cost_model.total_seconds(point.method, counts["method"], costs,
                                        point.num_draft_tokens, groups=lat_lengths,
                                        loop=loops["method"])
    ver_modelled = cost_model.total_seconds("verifier", counts["verifier"], costs,
                                            groups=lat_lengths, loop=loops["verifier"])
    q = quality[point.key]
    record = {"kind": "point", "key": point.key, "run_id": run_id,
              **dataclasses.asdict(point), "label": point.label, "quality": q["quality"],
              "cost": q["cost"], **timed.summary(),
              "predicted_relative_latency": modelled / ver_modelled,
              "modelled_latency_s": modelled / len(lat_ids),
              "verifier_modelled_latency_s": ver_modelled / len(lat_ids),
              "step_costs": {str(n): c.to_dict() for n, c in costs.items()},
              "loop_costs": {side: c.to_dict() for side, c in loops.items()},
              # The timed decodes' counts, per example, and each example's
              # length bucket: the summary prices them again at the run's
              # median step costs (summary.pooled_predictions).
              "counts": {side: {k: [int(x) for x in v] for k, v in counts[side].items()}
                         for side in ("method", "verifier")},
              "example_buckets": [int(n) for n in lat_lengths],
              "per_example": q["per_example"],
              "num_quality_examples": q["num_quality_examples"],
              "num_latency_examples": len(lat_ids), "repeats": repeats,
              "machine": machine,
              "seconds": q["seconds"] + sum(e["seconds"] for e in own),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    results.append(record)
    if on_point is not None:
      on_point(record)
