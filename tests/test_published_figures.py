"""The figures README.md and BENCHMARKS.md print, checked as data.

tests/published_figures.tsv holds one row per published figure: the document,
the figure's text as printed, the results file the value comes from, the key
path of the value in that file, and the format that prints the value as that
text. For every row the value, formatted, must be the text, and the text must
be in the document (whitespace runs count as one space: the markdown wraps
lines). So a regenerated results file names every figure that now prints
differently, and an edited document every figure it lost. Every cell of a
BENCHMARKS.md table that is a number must be the text of one of its rows (a
figure typed by hand fails), and every script output pasted into it (a
```text block) must be a results file's text.

Key paths, '/'-separated:
  - a dict key; `*` in a segment matches keys by glob (for keys with a '/');
  - an integer: a list index;
  - `field==value`: the one list element whose field (a key, or an index of a
    list element) prints as value; `a==x&&b==y` for several fields;
  - `re:REGEX` (a .txt file): the number in the regex's first group;
  - `=EXPR`: a Python expression of `{path}` values (a ratio, a difference,
    a median: FUNCTIONS).
Pure file parsing, no JAX.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import glob
import json
import os
import re
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(ROOT, "tests", "published_figures.tsv")
COLUMNS = ["document", "text", "file", "key", "format"]
NUMBER_CELL = re.compile(r"[-−+]?\d[\d,]*(?:\.\d+)?[%×]?")


@functools.lru_cache(maxsize=None)
def load(path: str):
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    text = f.read()
  if path.endswith(".json"):
    return json.loads(text)
  if path.endswith(".jsonl"):
    return [json.loads(line) for line in text.splitlines() if line.strip()]
  return text


def rows() -> list[dict[str, str]]:
  with open(TABLE, encoding="utf-8") as f:
    lines = [line for line in f if line.strip() and not line.startswith("#")]
  reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
  header = next(reader)
  assert header == COLUMNS, header
  out = []
  for n, cells in enumerate(reader, 2):
    assert len(cells) == len(COLUMNS), f"{TABLE}: row {n} has {len(cells)} columns: {cells}"
    out.append(dict(zip(COLUMNS, cells)))
  return out


def _same(x, printed: str) -> bool:
  if str(x) == printed:
    return True
  try:
    return not isinstance(x, bool) and float(printed) == x
  except (TypeError, ValueError):
    return False


def lookup(data, path: str):
  """The value at `path` (module docstring) in a loaded results file."""
  for seg in path.split("/"):
    if "==" in seg:
      found = data
      for cond in seg.split("&&"):
        field, printed = cond.split("==", 1)
        key = int(field) if field.lstrip("-").isdigit() else field
        found = [e for e in found if _same(e[key], printed)]
      if len(found) != 1:
        raise LookupError(f"{len(found)} elements with {seg!r}")
      data = found[0]
    elif isinstance(data, list):
      data = data[int(seg)]
    elif "*" in seg:
      keys = [k for k in data if fnmatch.fnmatchcase(k, seg)]
      if len(keys) != 1:
        raise LookupError(f"{len(keys)} keys match {seg!r}: {keys}")
      data = data[keys[0]]
    else:
      data = data[seg]
  return data


# What an =EXPR may call besides arithmetic.
FUNCTIONS = {"abs": abs, "min": min, "max": max, "sum": sum, "len": len,
             "median": statistics.median}


def value(file: str, key: str):
  data = load(file)
  if key.startswith("re:"):
    m = re.search(key[3:], data)
    if not m:
      raise LookupError(f"{key[3:]!r} not found")
    return float(m.group(1).replace(",", ""))
  if key.startswith("="):
    names = dict(FUNCTIONS)

    def name(m):
      names[f"v{len(names)}"] = value(file, m.group(1))
      return f"v{len(names) - 1}"
    expr = re.sub(r"\{([^{}]+)\}", name, key[1:])
    return eval(expr, {"__builtins__": {}, **names})  # names as globals: comprehensions see them
  return lookup(data, key)


def squeeze(text: str) -> str:
  return re.sub(r"\s+", " ", text)


def test_every_figure_is_its_files_value_as_printed_in_its_document():
  errors, table = [], rows()
  assert table, "no figures"
  for n, row in enumerate(table):
    where = f"{row['document']}: {row['text']!r} ({row['file']} {row['key']})"
    try:
      shown = row["format"].format(value(row["file"], row["key"]))
    except (KeyError, IndexError, LookupError, TypeError, ValueError, OSError) as e:
      errors.append(f"{where}: cannot be read: {e!r}")
      continue
    if shown != row["text"]:
      errors.append(f"{where}: the file now prints {shown!r}")
    if squeeze(row["text"]) not in squeeze(load(row["document"])):
      errors.append(f"{where}: not in {row['document']} any more")
  assert not errors, (f"{len(errors)} of {len(table)} published figures disagree (fix the "
                      "document or the row; results files are only written by scripts):\n  "
                      + "\n  ".join(errors))


def markdown_tables(text: str) -> list[list[list[str]]]:
  """The cells of each markdown table outside code blocks (separator rows dropped)."""
  tables, current, fenced = [], [], False
  for line in text.splitlines() + [""]:
    fenced ^= line.lstrip().startswith("```")
    s = line.strip()
    if s.startswith("|") and not fenced:
      if not re.fullmatch(r"\|[\s:|-]+\|", s):
        current.append([c.strip() for c in s.strip("|").split("|")])
    elif current:
      tables.append(current)
      current = []
  return tables


def test_every_number_in_a_benchmarks_table_is_a_figure():
  figures = {r["text"] for r in rows() if r["document"] == "BENCHMARKS.md"}
  tables = markdown_tables(load("BENCHMARKS.md"))
  assert tables
  typed = [(t[0][0], cell) for t in tables for row in t for cell in row
           if NUMBER_CELL.fullmatch(cell.replace("**", ""))
           and cell.replace("**", "") not in figures]
  assert not typed, ("numbers in BENCHMARKS.md tables that are no row of "
                     f"tests/published_figures.tsv (table, cell): {typed}")


def test_pasted_script_output_is_a_results_file():
  text = load("BENCHMARKS.md")
  blocks = re.findall(r"^```text\n(.*?)^```", text, re.S | re.M)
  assert blocks
  outputs = [load(os.path.relpath(p, ROOT))
             for p in glob.glob(os.path.join(ROOT, "benchmarks", "results", "*.txt"))]
  for block in blocks:
    assert any(block.strip() in out for out in outputs), (
        f"BENCHMARKS.md pastes output that no benchmarks/results/*.txt holds:\n{block}")


def test_benchmarks_cites_every_results_file_and_only_those_that_exist():
  text = load("BENCHMARKS.md")
  committed = {os.path.relpath(p, ROOT).replace(os.sep, "/")
               for p in glob.glob(os.path.join(ROOT, "benchmarks", "results", "*"))}
  cited = set(re.findall(r"benchmarks/results/[\w./-]*\w", text))
  assert cited - committed == set(), f"cited but not committed: {sorted(cited - committed)}"
  assert committed - cited == set(), f"committed but never cited: {sorted(committed - cited)}"
  for row in rows():
    assert os.path.isfile(os.path.join(ROOT, row["file"])), row


def test_the_committed_main_job_ran_the_demo_grid():
  """docs/demo holds the output of configs/demo.gin's grid, every curve of it."""
  from spec_cascade_jax.evaluation import grids  # the standard library only
  curves = {r["curve"] for r in load("docs/demo/summary.json")["tables"][0]["rows"]}
  assert curves == {c.name for c in grids.DEMO}, (curves, {c.name for c in grids.DEMO})
