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

Results file (`output_dir/results.jsonl`, one JSON object a line, appended and
fsync'ed as each point finishes; evaluation/results.py reads and writes it):
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

Resuming. A rerun with the same context skips every point whose key is in the
file; a point that was interrupted has no line (or a truncated one, ignored)
and is redone. Each point carries its own verifier timing (paired, same
examples, same minutes), so points measured by different process runs, even
on a machine under other load, are each a self-contained ratio; `run_id` and
`machine` record where they came from. A rerun with a different context
(task, models, examples, lengths, latency protocol) is refused rather than
mixed in.
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
LATENCY_PROTOCOL = "paired-interleaved-v1"


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
    _run_points(pending, results, drafter, verifier, task, split, vocabulary,
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


def _run_points(pending, results, drafter, verifier, task, split, vocabulary,
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
  # The step-cost programs of each length bucket, timed among every point's
  # pairs: with each timed decode's counts they predict the point's relative
  # latency (evaluation/cost_model.py).
  lat_lengths = [infer.bucket_length(len(x), buckets) for x in lat_ids]
  programs = {n: step_costs.programs(q_model, p_model, input_length=n,
                                     max_new_tokens=max_new_tokens,
                                     num_draft_tokens=max(p.num_draft_tokens for p in pending),
                                     inner=STEP_COST_INNER)
              for n in sorted(set(lat_lengths))}
  # The greedy verifier's outputs: each greedy point's token losses are taken
  # against them (the summary's calibrated α; calibration.calibrate_sweep).
  ver_tokens = calibration.sweep_verifier_tokens(results.points())
  bar = tqdm(pending, desc="sweep points")
  for point in bar:
    bar.set_postfix_str(point.label)
    t0 = time.perf_counter()
    tokens, stats = infer.decode_batched(q_model, p_model, data.input_ids, point,
                                         batch_size, max_new_tokens, buckets, progress=True)
    predictions = [data.decode(t) for t in tokens]
    quality = infer.score(data, predictions)
    per_example = None
    if point.temperature == 0:
      per_example = calibration.sweep_losses(point.method, tokens, predictions, data.targets,
                                             ver_tokens)
      ver_tokens = tokens if point.method == "verifier" else ver_tokens
    counts: dict = {}
    method_kw, ver_kw = infer.paired_kwargs(point, max_new_tokens)
    free = loop_costs.programs({"method": ("both", method_kw), "verifier": ("verifier", ver_kw)},
                               p_model, point.seed)
    timed = infer.time_point(q_model, p_model, lat_ids, point, max_new_tokens, buckets,
                             repeats, stats_out=counts, step_programs=programs,
                             loop_programs=free)
    costs, loops = counts["step_costs"], counts["loop_costs"]
    modelled = cost_model.total_seconds(point.method, counts["method"], costs,
                                        point.num_draft_tokens, groups=lat_lengths,
                                        loop=loops["method"])
    ver_modelled = cost_model.total_seconds("verifier", counts["verifier"], costs,
                                            groups=lat_lengths, loop=loops["verifier"])
    record = {"kind": "point", "key": point.key, "run_id": run_id,
              **dataclasses.asdict(point), "label": point.label, "quality": quality,
              "cost": infer.cost_stats(stats, point.method), **timed.summary(),
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
              "per_example": per_example,
              "num_quality_examples": len(data), "num_latency_examples": len(lat_ids),
              "repeats": repeats, "machine": machine,
              "seconds": time.perf_counter() - t0,
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    results.append(record)
    if on_point is not None:
      on_point(record)
