"""The notebook runs top to bottom (tiny random models, few examples) and is
committed without outputs."""

from __future__ import annotations

import os

import pytest

# The test extra (setup.py) has these: missing, these tests fail, not skip.
# ipykernel provides the "python3" kernel nbclient starts; matplotlib (core)
# draws the notebook's plot.
import ipykernel  # pylint: disable=unused-import
import nbclient
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "speculative_cascades.ipynb")


def test_notebook_is_committed_without_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_notebook_executes_on_tiny_models(tmp_path, monkeypatch):
  monkeypatch.setenv("SCJ_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("SCJ_NOTEBOOK_OUTPUT_DIR", str(tmp_path / "sweep"))
  # The kernel is a fresh process: make the package importable without install.
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # The whole notebook needs ~1 min of CPU on an idle 2-core machine; the
  # per-cell limit is generous because CI machines are shared.
  nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
  html = "\n".join(str(o.get("data", {}).get("text/html", "")) for c in nb.cells
                   if c.cell_type == "code" for o in c.outputs)
  assert "verifier correction" in html and "drafts accepted" in html
  assert "speculative" in text and "calls=" in text
  assert "calibration examples" in text   # the calibration section's guarantee
  for name in ("results.jsonl", "summary.md", "tradeoff.png"):
    assert (tmp_path / "sweep" / name).stat().st_size > 0
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]
  assert images, "the trade-off plot was not displayed"
