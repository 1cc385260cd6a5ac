"""The sweep's results file: an append-only JSONL that sweeps write and plots read.

One JSON object a line (the record kinds are listed in sweep.py's docstring):
the sweep appends and fsyncs a line as each point finishes, and the plots and
the summary read the file back, never live state. This module holds only the
file format, so that sweep.py (which writes it and draws the plots) and
plots.py (whose command line redraws them from a file) both build on it
without importing each other.

    points = load_results("runs/demo")          # or runs/demo/results.jsonl
"""

from __future__ import annotations

import json
import os
from typing import Mapping

RESULTS_FILE = "results.jsonl"


class ResultsFile:
  """Append-only JSONL of sweep records (see the module docstring)."""

  def __init__(self, path: str):
    self.path = path

  def read(self) -> list[dict]:
    """Every complete record; a truncated line (an interrupted write) is skipped."""
    if not os.path.exists(self.path):
      return []
    out = []
    with open(self.path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if not line:
          continue
        try:
          out.append(json.loads(line))
        except json.JSONDecodeError:
          continue  # only the last line can be partial: its point is redone
    return out

  def append(self, record: Mapping) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    with open(self.path, "a+", encoding="utf-8") as f:
      # A killed process can leave a partial last line: start on a fresh one.
      f.seek(0, os.SEEK_END)
      if f.tell() > 0:
        f.seek(f.tell() - 1)
        if f.read(1) != "\n":
          f.write("\n")
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def points(self) -> list[dict]:
    return [r for r in self.read() if r.get("kind") == "point"]

  def done_keys(self) -> set[str]:
    return {r["key"] for r in self.points()}

  def copy_baseline(self) -> dict | None:
    """Quality of returning the input unchanged, if recorded (see sweep.run_sweep)."""
    for r in self.read():
      if r.get("kind") == "copy_baseline":
        return r["quality"]
    return None

  def context(self) -> dict | None:
    for r in self.read():
      if r.get("kind") == "sweep":
        return r["context"]
    return None


def results_path(path: str) -> str:
  """`path` itself, or `path/results.jsonl` where `path` is a directory."""
  return os.path.join(path, RESULTS_FILE) if os.path.isdir(path) else path


def load_results(path: str) -> list[dict]:
  """Point records of a results file (or of `path/results.jsonl`)."""
  path = results_path(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no sweep results at {path!r}; run a sweep first")
  return ResultsFile(path).points()
