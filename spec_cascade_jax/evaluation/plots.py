"""Figure-2-style plots from saved sweep results (never from live state).

    python -m spec_cascade_jax.evaluation.plots runs/demo/results.jsonl \
        --output_dir docs --metric bleu

tradeoff.png: quality against latency relative to the verifier (batch 1), one
curve per method through its points in order of latency, each point labelled
with its α, horizontal error bars the 95% bootstrap interval of its latency
(vertical ones the spread over seeds at T > 0); the verifier (a star at
latency 1 with a dashed line at its quality) and the drafter are drawn on top.
deferral.png: quality against deferral rate for the methods with a deferral
rule. One panel per temperature; the title names the task, split, models, γ
and machine. Each curve has one colour and marker, the same in every plot
(`style`; a new method gets its style there). Figures are drawn on
matplotlib's Agg canvas through the object API (`Figure`, not pyplot), so no
display is needed and the global backend of a notebook or script that imports
this module is untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from typing import Mapping, Sequence

from matplotlib.figure import Figure

from spec_cascade_jax.evaluation import grids, latency, results, summary

# One colour and marker per curve of grids.py; distinct within every grid.
CURVE_STYLES: dict[str, tuple[str, str]] = {
    "Verifier": ("#000000", "*"),
    "Drafter": ("#7f7f7f", "X"),
    "SpecDecode": ("#1f77b4", "o"),
    "PromptLookup": ("#17becf", "P"),
    "LossySD": ("#aec7e8", "v"),
    "BiLD*": ("#8c564b", "h"),
    "SeqCascade[chow]": ("#bcbd22", "<"),
    "TokenCascade[chow]": ("#9467bd", ">"),
    "SpecCascade[chow]": ("#ff7f0e", "s"),
    "SpecCascade[diff]": ("#2ca02c", "D"),
    "SpecCascade[opt]": ("#98df8a", "d"),
    "SpecCascade[token_v1]": ("#d62728", "^"),
    "SpecCascade[token_v2]": ("#e377c2", "p"),
    "SpecCascade[token_v3]": ("#ff9896", "8"),
    # Draft policies (decoding/drafting.py): their base curve's family, darker.
    "SpecDecode+confidence": ("#08519c", "v"),
    "SpecDecode+cumulative": ("#6baed6", "o"),
    "SpecDecode+heuristic": ("#253494", "s"),
    "SpecCascade[token_v3]+confidence": ("#a50f15", "8"),
}
# Curves not listed above (custom grids) draw from these, keyed by a hash of the name.
_SPARE_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                  "#e6550d", "#31a354", "#756bb1", "#636363")
_SPARE_MARKERS = "o^sDvph<>"


def style(curve: str) -> dict:
  """{color, marker} of a curve: CURVE_STYLES, else a stable pick for its name."""
  if curve in CURVE_STYLES:
    color, marker = CURVE_STYLES[curve]
  else:
    h = int(hashlib.sha256(curve.encode()).hexdigest(), 16)
    color = _SPARE_COLOURS[h % len(_SPARE_COLOURS)]
    marker = _SPARE_MARKERS[(h // len(_SPARE_COLOURS)) % len(_SPARE_MARKERS)]
  return {"color": color, "marker": marker}


def figure_title(rows: Sequence[Mapping], records: Sequence[Mapping],
           context: Mapping | None) -> str:
  ctx = dict(context or {})
  gammas = sorted({r["num_draft_tokens"] for r in rows
                   if r["method"] not in ("verifier", "drafter", "seq_cascade")})
  machines = {latency.describe_machine(r.get("machine")) for r in records}
  machine = machines.pop() if len(machines) == 1 else "several machines"
  models = (f"{ctx['drafter']} → {ctx['verifier']}" if "drafter" in ctx
            else "models not recorded")
  task = f"{ctx.get('task', 'task not recorded')} ({ctx.get('split', '?')})"
  n = max((r.get("num_latency_examples") or 0 for r in records), default=0)
  return (f"{task}: {models}; γ = {', '.join(f'{g:g}' for g in gammas) or '—'}; "
          f"latency at batch 1 on {n} examples, {machine}")


def _panels(rows: Sequence[Mapping], title: str):
  temps = sorted({r["temperature"] for r in rows})
  fig = Figure(figsize=(8.5 * len(temps), 6.0))
  axes = fig.subplots(1, len(temps), squeeze=False)
  fig.suptitle(title, fontsize=9)
  return temps, fig, axes[0]


def _label_alphas(ax, pts, x_key: str, color: str):
  """Each point's α, and τ for a threshold draft policy's (a curve of τ × α)."""
  for r in pts:
    text = [f"{r['alpha']:g}"] if r["method"] not in grids.NO_ALPHA_METHODS else []
    if r.get("draft_threshold"):
      text.append(f"τ={r['draft_threshold']:g}")
    if text:
      ax.annotate(", ".join(text), (r[x_key], r["quality"]), textcoords="offset points",
                  xytext=(3, 3), fontsize=6, color=color)


def plot_tradeoff(records: Sequence[Mapping], output: str, metric: str | None = None,
                  context: Mapping | None = None) -> str:
  """quality vs relative latency (the paper's Figure 2); returns `output`."""
  metric = metric or summary.default_metric(records)
  rows = summary.aggregate(records, metric)
  temps, fig, axes = _panels(rows, figure_title(rows, records, context))
  for ax, t in zip(axes, temps):
    rows_t = [r for r in rows if r["temperature"] == t]
    for curve in dict.fromkeys(r["curve"] for r in rows_t):
      pts = sorted((r for r in rows_t if r["curve"] == curve),
                   key=lambda r: r["relative_latency"])
      method, st = pts[0]["method"], style(curve)
      reference = method in ("verifier", "drafter")
      xerr = [[r["relative_latency"] - (r["relative_latency_interval"] or [r["relative_latency"]] * 2)[0]
               for r in pts],
              [(r["relative_latency_interval"] or [r["relative_latency"]] * 2)[1] - r["relative_latency"]
               for r in pts]]
      label = curve + (f" ({pts[0]['quality']:.2f})" if reference else "")
      if method == "verifier":
        ax.axhline(pts[0]["quality"], color=st["color"], linestyle="--", linewidth=0.8,
                   alpha=0.6)
      ax.errorbar([r["relative_latency"] for r in pts], [r["quality"] for r in pts],
                  xerr=xerr, yerr=[r["quality_std"] or 0 for r in pts], label=label,
                  color=st["color"], marker=st["marker"], capsize=2, elinewidth=0.8,
                  linestyle="" if len(pts) == 1 else "-", linewidth=1.0,
                  markersize=13 if method == "verifier" else 9 if reference else 6,
                  markerfacecolor="none" if method == "verifier" else st["color"],
                  zorder=10 if reference else 3)
      _label_alphas(ax, pts, "relative_latency", st["color"])
    ax.axvline(1.0, color="k", linewidth=0.5, alpha=0.4)
    ax.set_xlabel("latency relative to the verifier (batch 1; bars: 95% interval)")
    ax.set_ylabel(metric)
    ax.set_title(f"temperature {t:g} (labels: α; τ: a draft policy's threshold)",
                 fontsize=9)
    ax.grid(alpha=0.3)
  return _save(fig, axes, output)


def _save(fig, axes, output: str) -> str:
  # Outside the axes: with a dozen curves, a legend inside covers points.
  axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=120, bbox_inches="tight")  # PNG through the Agg canvas
  return output


def plot_deferral(records: Sequence[Mapping], output: str, metric: str | None = None,
                  context: Mapping | None = None) -> str:
  """quality vs deferral rate (share of tokens, or of sequences for SeqCascade)
  of the methods with a deferral rule; the verifier's quality as a line."""
  metric = metric or summary.default_metric(records)
  rows = summary.aggregate(records, metric)
  temps, fig, axes = _panels(rows, figure_title(rows, records, context))
  for ax, t in zip(axes, temps):
    rows_t = [r for r in rows if r["temperature"] == t]
    for r in rows_t:
      if r["method"] == "verifier":
        ax.axhline(r["quality"], color=style("Verifier")["color"], linestyle="--",
                   linewidth=0.8, label=f"Verifier ({r['quality']:.2f})")
    ruled = [r for r in rows_t if r["deferral_rate"] is not None]
    for curve in dict.fromkeys(r["curve"] for r in ruled):
      pts = sorted((r for r in ruled if r["curve"] == curve), key=lambda r: r["deferral_rate"])
      st = style(curve)
      ax.plot([r["deferral_rate"] for r in pts], [r["quality"] for r in pts], label=curve,
              color=st["color"], marker=st["marker"], linewidth=1.0, markersize=6)
      _label_alphas(ax, pts, "deferral_rate", st["color"])
    ax.set_xlabel("deferral rate: share of tokens handed to the verifier "
                  "(of sequences for SeqCascade)")
    ax.set_ylabel(metric)
    ax.set_title(f"temperature {t:g} (labels: α; τ: a draft policy's threshold)",
                 fontsize=9)
    ax.grid(alpha=0.3)
  return _save(fig, axes, output)


def plot_all(records: Sequence[Mapping], output_dir: str, metric: str | None = None,
             context: Mapping | None = None) -> list[str]:
  """tradeoff.png and deferral.png in `output_dir`; `context`: the sweep's
  (task, split, drafter, verifier) for the titles."""
  return [plot_tradeoff(records, os.path.join(output_dir, "tradeoff.png"), metric, context),
          plot_deferral(records, os.path.join(output_dir, "deferral.png"), metric, context)]


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("results", help="results.jsonl of a sweep, or its directory")
  parser.add_argument("--output_dir", default=None, help="default: next to the results")
  parser.add_argument("--metric", default=None)
  args = parser.parse_args(argv)
  records = results.load_results(args.results)
  stored = results.ResultsFile(results.results_path(args.results))
  context = stored.context()
  out = args.output_dir or (args.results if os.path.isdir(args.results)
                            else os.path.dirname(os.path.abspath(args.results)))
  s = summary.summarize(records, args.metric, copy_quality=stored.copy_baseline())
  print(summary.format_markdown(s))
  summary.save(s, out)
  for p in plot_all(records, out, s["metric"], context):
    print(f"wrote {p}")


if __name__ == "__main__":
  main()
