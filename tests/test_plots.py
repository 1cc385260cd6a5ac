"""Plots: one style per method everywhere, titles that say what was measured."""

from __future__ import annotations

import os

import pytest

from spec_cascade_jax.evaluation import grids, plots


@pytest.mark.parametrize("grid", sorted(grids.GRIDS))
def test_every_curve_of_a_grid_has_its_own_colour_and_marker(grid):
  curves = [c.name for c in grids.GRIDS[grid]]
  assert set(curves) <= set(plots.CURVE_STYLES), set(curves) - set(plots.CURVE_STYLES)
  colours = [plots.style(c)["color"] for c in curves]
  markers = [plots.style(c)["marker"] for c in curves]
  assert len(set(colours)) == len(curves), "two curves share a colour"
  assert len(set(zip(colours, markers))) == len(curves)


def test_a_new_curve_gets_a_stable_style_of_its_own():
  a = plots.style("OracleCascade[token_v3]")
  assert a == plots.style("OracleCascade[token_v3]")   # same in every plot and run
  assert a["color"] not in {c for c, _ in plots.CURVE_STYLES.values()}


def _rec(curve, method, alpha, bleu, lat, deferral=None):
  return {"kind": "point", "curve": curve, "method": method, "rule": "", "alpha": alpha,
          "num_draft_tokens": 5, "temperature": 0.0, "seed": 0, "quality": {"bleu": bleu},
          "relative_latency": lat, "relative_latency_interval": [lat - 0.04, lat + 0.05],
          "num_latency_examples": 24,
          "machine": {"backend": "cpu", "device": "cpu", "cpus": 2},
          "cost": {"deferral_rate": deferral, "mean_tokens": 20.0}}


RECORDS = [_rec("Verifier", "verifier", 0.0, 30.0, 1.0),
           _rec("Drafter", "drafter", 0.0, 20.0, 0.2),
           _rec("SpecDecode", "speculative", 0.0, 30.0, 1.0),
           _rec("SpecCascade[token_v3]", "spec_cascade", 0.1, 30.5, 0.8, 0.3),
           _rec("SpecCascade[token_v3]", "spec_cascade", 0.4, 28.0, 0.6, 0.1)]
CONTEXT = {"task": "gettext_en_de", "split": "validation", "drafter": "demo-drafter",
           "verifier": "demo-verifier"}


def test_the_title_names_task_split_models_gamma_and_machine():
  rows = [dict(r, num_draft_tokens=r["num_draft_tokens"]) for r in RECORDS]
  title = plots.figure_title(rows, RECORDS, CONTEXT)
  for words in ("gettext_en_de (validation)", "demo-drafter → demo-verifier", "γ = 5",
                "24 examples", "cpu, 2 cores"):
    assert words in title, (words, title)
  mixed = RECORDS[:-1] + [dict(RECORDS[-1], machine={"backend": "gpu", "device": "H200"})]
  assert "several machines" in plots.figure_title(rows, mixed, CONTEXT)


def test_plots_are_written(tmp_path):
  paths = plots.plot_all(RECORDS, str(tmp_path), "bleu", CONTEXT)
  assert [os.path.basename(p) for p in paths] == ["tradeoff.png", "deferral.png"]
  for p in paths:
    with open(p, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
