"""Figure-2-style plots from saved sweep results (never from live state).

    python -m spec_cascade_jax.evaluation.plots runs/demo/results.jsonl \
        --output_dir docs --metric bleu

tradeoff.png: quality against latency relative to the verifier, one curve per
method (points joined in α order), a horizontal line at the verifier's
quality, the drafter's point; error bars when seeds were averaged.
deferral.png: quality against deferral rate, one curve per method.
One panel per temperature. Figures are drawn on matplotlib's Agg canvas
through the object API (`Figure`, not pyplot), so no display is needed and the
global backend of a notebook or script that imports this module is untouched.
"""

from __future__ import annotations

import argparse
import os
from typing import Mapping, Sequence

from matplotlib.figure import Figure

from spec_cascade_jax.evaluation import grids, summary

_SINGLE = grids.NO_ALPHA_METHODS  # one point each, no α curve


def _style(i: int, method: str) -> dict:
  markers = "osD^v<>phX*"
  return dict(marker=markers[i % len(markers)], linestyle="-" if method not in _SINGLE else "",
              markersize=5 if method not in _SINGLE else 9)


def _panels(rows: Sequence[Mapping]):
  temps = sorted({r["temperature"] for r in rows})
  fig = Figure(figsize=(7.5 * len(temps), 5.5))
  axes = fig.subplots(1, len(temps), squeeze=False)
  return temps, fig, axes[0]


def plot_tradeoff(records: Sequence[Mapping], output: str, metric: str | None = None) -> str:
  """quality vs relative latency (the paper's Figure 2); returns `output`."""
  metric = metric or summary.default_metric(records)
  rows = summary.aggregate(records, metric)
  temps, fig, axes = _panels(rows)
  for ax, t in zip(axes, temps):
    rows_t = [r for r in rows if r["temperature"] == t]
    for i, curve in enumerate(dict.fromkeys(r["curve"] for r in rows_t)):
      pts = [r for r in rows_t if r["curve"] == curve]
      method = pts[0]["method"]
      if method == "verifier":
        ax.axhline(pts[0]["quality"], color="k", linestyle="--", linewidth=1,
                   label=f"Verifier ({pts[0]['quality']:.2f})")
        continue
      color = "gray" if method == "drafter" else None
      ax.errorbar([r["relative_latency"] for r in pts], [r["quality"] for r in pts],
                  xerr=[r["relative_latency_std"] or 0 for r in pts],
                  yerr=[r["quality_std"] or 0 for r in pts], label=curve, color=color,
                  capsize=2, **_style(i, method))
    ax.axvline(1.0, color="k", linewidth=0.5, alpha=0.4)
    ax.set_xlabel("latency relative to the verifier (batch 1)")
    ax.set_ylabel(metric)
    ax.set_title(f"temperature {t:g}")
    ax.grid(alpha=0.3)
  return _save(fig, axes, output)


def _save(fig, axes, output: str) -> str:
  # Outside the axes: with a dozen curves, a legend inside covers points.
  axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=120, bbox_inches="tight")  # PNG through the Agg canvas
  return output


def plot_deferral(records: Sequence[Mapping], output: str, metric: str | None = None) -> str:
  """quality vs deferral rate (share of tokens, or of sequences for SeqCascade)."""
  metric = metric or summary.default_metric(records)
  rows = summary.aggregate(records, metric)
  temps, fig, axes = _panels(rows)
  for ax, t in zip(axes, temps):
    rows_t = [r for r in rows if r["temperature"] == t and r["deferral_rate"] is not None]
    for i, curve in enumerate(dict.fromkeys(r["curve"] for r in rows_t)):
      pts = sorted((r for r in rows_t if r["curve"] == curve),
                   key=lambda r: r["deferral_rate"])
      ax.plot([r["deferral_rate"] for r in pts], [r["quality"] for r in pts], label=curve,
              **_style(i, pts[0]["method"]))
    ax.set_xlabel("deferral rate (to the verifier)")
    ax.set_ylabel(metric)
    ax.set_title(f"temperature {t:g}")
    ax.grid(alpha=0.3)
  return _save(fig, axes, output)


def plot_all(records: Sequence[Mapping], output_dir: str, metric: str | None = None
             ) -> list[str]:
  """tradeoff.png and deferral.png in `output_dir`."""
  return [plot_tradeoff(records, os.path.join(output_dir, "tradeoff.png"), metric),
          plot_deferral(records, os.path.join(output_dir, "deferral.png"), metric)]


def main(argv: Sequence[str] | None = None) -> None:
  from spec_cascade_jax.evaluation import sweep  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("results", help="results.jsonl of a sweep, or its directory")
  parser.add_argument("--output_dir", default=None, help="default: next to the results")
  parser.add_argument("--metric", default=None)
  args = parser.parse_args(argv)
  records = sweep.load_results(args.results)
  out = args.output_dir or (args.results if os.path.isdir(args.results)
                            else os.path.dirname(os.path.abspath(args.results)))
  s = summary.summarize(records, args.metric)
  print(summary.format_markdown(s))
  summary.save(s, out)
  for p in plot_all(records, out, s["metric"]):
    print(f"wrote {p}")


if __name__ == "__main__":
  main()
