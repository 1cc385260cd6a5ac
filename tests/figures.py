"""The figures README.md and BENCHMARKS.md publish, against the files they cite:
the machinery of the published-figures tests.

The markdown quotes numbers measured by the scripts in `benchmarks/`
(`benchmarks/results/`), by the main job (`docs/demo/`), and facts of the
bundled data and models (their `manifest.json` and `recipe.json`). Each check
reads a number from the markdown and the value it quotes from the file it
cites, and compares them as printed: the file's value rounded to the decimals
the markdown shows. No figure is written into this test, so after a results
file is regenerated it names every sentence or table cell that still quotes
the old run, with what the file says now.

A check finds its number by the words around it (`Checks.claim`), or by a
table's header and row label; tables a script printed are compared cell by
cell with the file. When the markdown is reworded, point the check at the new
wording; do not drop it.

Not checked: figures with no results file in the repository (one-off
measurements, whose method the markdown states; earlier runs quoted for
comparison; runs kept under the git-ignored `runs/`).

Pure file parsing, no JAX: about two seconds.

This module holds the machinery (reading results files, finding numbers in
the markdown, comparing them as printed); the checks are in
test_published_figures.py (README, the bundled data and pair),
test_published_speed.py (the main job and the CPU benchmarks) and
test_published_gpu.py (the accelerator runs).
"""

from __future__ import annotations
import functools
import json
import operator
import os
import re
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R = "benchmarks/results/"
SPEED, SPEED_B8 = R + "speed.json", R + "speed_b8.json"
SPEED_TXT, GAMMAS_TXT = R + "speed.txt", R + "speed_cascade_gammas.txt"
QUALITY, STEP_COST, ROUND_PROFILE = R + "quality.json", R + "step_cost.txt", R + "round_profile.txt"
QUALITY_PAIR_V3, QUALITY_PAIR_V4 = R + "quality_pair_v3.json", R + "quality_pair_v4.json"
LOOKUP_ESTIMATE = R + "lookup_estimate.txt"
VS_HF, VS_HF_G3, VS_HF_G3_RUN2, VS_HF_TXT = (R + "vs_hf.json", R + "vs_hf_gamma3.json",
                                            R + "vs_hf_gamma3_run2.json", R + "vs_hf.txt")
GPU, GPU_CMDBUF = R + "gpu_h200.json", R + "gpu_h200_command_buffer.json"
DEMO_SUMMARY, DEMO_RESULTS = "docs/demo/summary.json", "docs/demo/results.jsonl"
# The first pair's main-job run (docs/demo until the v2 pair replaced it).
DEMO_V1_SUMMARY, DEMO_V1_RESULTS = R + "demo_v1/summary.json", R + "demo_v1/results.jsonl"
DATA = "spec_cascade_jax/assets/data/"
CORPUS, CORPUS_V2 = DATA + "gettext_en_de/manifest.json", DATA + "gettext_en_de/manifest.json"
MODELS = "spec_cascade_jax/assets/models/"
VERIFIER_RECIPE = MODELS + "demo-verifier/recipe.json"
DRAFTER_RECIPE = MODELS + "demo-drafter/recipe.json"

NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?"


# ---------------------------------------------------------------------------
# Reading the files.

@functools.lru_cache(maxsize=None)
def load_json(path: str):
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    text = f.read()
  if path.endswith(".json"):
    return json.loads(text)
  if path.endswith(".jsonl"):
    return [json.loads(line) for line in text.splitlines() if line.strip()]
  return text


class V:
  """A value in a results file, or one computed from such values, and where it is."""

  def __init__(self, fn, where: str):
    self.fn, self.where = fn, where

  def get(self):
    return self.fn()

  def _op(self, other, op, sym: str) -> "V":
    if isinstance(other, V):
      return V(lambda: op(self.get(), other.get()), f"{self.where} {sym} {other.where}")
    return V(lambda: op(self.get(), other), f"{self.where} {sym} {other:g}")

  def __add__(self, other):
    return self._op(other, operator.add, "+")

  def __sub__(self, other):
    return self._op(other, operator.sub, "-")

  def __mul__(self, other):
    return self._op(other, operator.mul, "×")

  def __truediv__(self, other):
    return self._op(other, operator.truediv, "/")


def at(path: str, *keys) -> V:
  """A value by its keys: at(GPU, "pairs", "t5", "hf", "greedy_ms_per_token")."""
  def fn():
    x = load_json(path)
    for k in keys:
      x = x[k]
    return x
  return V(fn, f"{path} {'/'.join(map(str, keys))}")


def one_row(rows, where: str, **match):
  found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
  if len(found) != 1:
    raise LookupError(f"{len(found)} rows with {match} in {where}")
  return found[0]


def row_value(path: str, rows_at: tuple, match: dict, key: str) -> V:
  def fn():
    rows = load_json(path)
    for k in rows_at:
      rows = rows[k]
    return one_row(rows, path, **match)[key]
  label = ", ".join(f"{v}" for v in match.values())
  return V(fn, f"{path} [{label}] {key}")


def speed(label: str, key: str, temp: str = "T=0", path: str = SPEED) -> V:
  return row_value(path, ("tables", temp), {"label": label}, key)


def vs_hf(path: str, name: str, key: str) -> V:
  return row_value(path, ("rows",), {"name": name}, key)


def quality(model: str, key: str) -> V:
  return row_value(QUALITY, ("rows",), {"model": model}, key)


def summary(curve: str, key: str, path: str = DEMO_SUMMARY) -> V:
  return row_value(path, ("tables", 0, "rows"), {"curve": curve}, key)


def demo_point(curve: str, alpha: float, metric: str | None = None,
               path: str = DEMO_RESULTS) -> V:
  """A point of a main-job run (docs/demo/results.jsonl by default): its
  quality[metric], or its relative latency when metric is None."""
  def fn():
    recs = [r for r in load_json(path) if r.get("kind") == "point"
            and r["curve"] == curve and abs(r["alpha"] - alpha) < 1e-9]
    r = one_row(recs, path)
    return r["quality"][metric] if metric else r["relative_latency"]
  return V(fn, f"{path} [{curve} α={alpha:g}] "
               + (f"quality/{metric}" if metric else "relative_latency"))


def fixed_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
  """The fixed-width tables the scripts print (common.format_table): a header
  line, a line of dashes, rows; columns are 2+ spaces apart. Each comes with
  the last '#' line above it as its title."""
  out, title, lines = [], "", text.splitlines()
  i = 0
  while i < len(lines):
    line = lines[i]
    if line.startswith("#"):
      title = line
    if i + 1 < len(lines) and re.fullmatch(r"-{10,}", lines[i + 1].strip()) and line.strip():
      header = re.split(r"\s{2,}", line.strip())
      rows = []
      i += 2
      while i < len(lines):
        cells = re.split(r"\s{2,}", lines[i].strip())
        if len(cells) != len(header):
          break
        rows.append(cells)
        i += 1
      out.append((title, header, rows))
      continue
    i += 1
  return out


def txt_table(path: str, title_has: str = "") -> tuple[list[str], list[list[str]]]:
  tables = [(h, r) for t, h, r in fixed_tables(load_json(path)) if title_has in t]
  assert len(tables) == 1, f"{path}: {len(tables)} tables titled {title_has!r}"
  return tables[0]


def txt_cell(path: str, title_has: str, label: str, column: str) -> V:
  """A cell of a table a script printed into a .txt results file."""
  def fn():
    header, rows = txt_table(path, title_has)
    return float(one_row([dict(zip(header, r)) for r in rows], path, **{header[0]: label})[column])
  return V(fn, f"{path} [{title_has} {label}] {column}")


def txt_number(path: str, pattern: str) -> V:
  """The number a script printed after some words in a .txt results file."""
  def fn():
    m = re.search(pattern, load_json(path))
    if not m:
      raise LookupError(f"{pattern!r} not in {path}")
    return float(m.group(1).replace(",", ""))
  return V(fn, f"{path} {pattern!r}")


def profile_blocks() -> list[dict]:
  """round_profile.txt: one dict per profiled decoding (title, info, the command
  above it, wall µs, µs per phase)."""
  blocks, cmd = [], ""
  for line in load_json(ROUND_PROFILE).splitlines():
    if line.startswith("$ ") or line.startswith("# python"):
      cmd = line
    m = re.match(r"# (\S.*?) T=[\d.]+: (.*)$", line)
    if m:
      blocks.append({"title": m.group(1), "info": m.group(2), "cmd": cmd, "phases": {}})
    m = re.match(r"wall \(no profiler, min of \d+\): (\d+) µs", line)
    if m:
      blocks[-1]["wall_us"] = float(m.group(1))
    m = re.match(r"(\S+/\S+|other)\s+([\d.]+)\s+[\d.]+%$", line)
    if m and blocks:
      blocks[-1]["phases"][m.group(1)] = float(m.group(2))
  return blocks


def profile(title: str, what: str, cmd_has: str = "", info_has: str = "") -> V:
  """A figure of one block of round_profile.txt. what: wall_us, rounds, tokens,
  or the share (%) of the traced time of: verifier (step/model + verify/model),
  drafter (draft/model), encoders (encode/model), kernel (everything else:
  the */kernel phases and `other`)."""
  def fn():
    b = one_row([b for b in profile_blocks() if cmd_has in b["cmd"] and info_has in b["info"]],
             ROUND_PROFILE, title=title)
    if what == "wall_us":
      return b["wall_us"]
    if what in ("rounds", "tokens", "steps"):
      return float(re.search(rf"(\d+) {what}", b["info"]).group(1))
    if what == "tokens_per_round":
      return float(re.search(r"\(([\d.]+) tokens per", b["info"]).group(1))
    ph, total = b["phases"], sum(b["phases"].values())
    model = {"verifier": ("step/model", "verify/model"), "drafter": ("draft/model",),
             "encoders": ("encode/model",)}
    if what == "kernel":
      return 100 * sum(v for k, v in ph.items() if not k.endswith("/model")) / total
    return 100 * sum(ph.get(k, 0.0) for k in model[what]) / total
  return V(fn, f"{ROUND_PROFILE} [{title}{' ' + info_has if info_has else ''}] {what}")


def range_of(values: list[V], pick) -> V:
  return V(lambda: pick(v.get() for v in values), f"{pick.__name__} of ("
           + "; ".join(v.where for v in values) + ")")


# ---------------------------------------------------------------------------
# Reading the markdown.

def doc(name: str, heading: str = "") -> str:
  """A markdown file, or its section whose heading line starts with `heading`
  (up to the next heading of the same or a higher level)."""
  text = load_json(name)
  if not heading:
    return text
  lines, fenced, headings = text.splitlines(), False, []
  for i, line in enumerate(lines):  # '#' lines inside ``` blocks are not headings
    fenced ^= line.startswith("```")
    m = re.match(r"(#+) ", line)
    if m and not fenced:
      headings.append((i, len(m.group(1)), line))
  starts = [(i, level) for i, level, line in headings if line.startswith(heading)]
  assert len(starts) == 1, f"{name}: {len(starts)} headings start with {heading!r}"
  start, level = starts[0]
  end = next((i for i, lv, _ in headings if i > start and lv <= level), len(lines))
  return "\n".join(lines[start:end])


def template_regex(template: str) -> str:
  """'slower ({a} against {b})' -> a regex: literal words, any whitespace
  between them (the markdown wraps lines), a number for each {slot}."""
  out = []
  for part in re.split(r"(\{\w+\})", template):
    if re.fullmatch(r"\{\w+\}", part):
      out.append(f"(?P<{part[1:-1]}>{NUMBER})")
    else:
      out.append(r"\s+".join(re.escape(w) for w in re.split(r"\s+", part)))
  return "".join(out)


def number(cell: str) -> str:
  """The first number printed in a cell ('**1.27**', '2.6 MiB (float32)')."""
  m = re.search(NUMBER, cell)
  assert m, f"no number in {cell!r}"
  return m.group(0)


def md_table(text: str, first_headers: list[str]) -> list[dict[str, str]]:
  """The rows (header -> cell) of the markdown table whose header starts with
  `first_headers`."""
  lines = [line.strip() for line in text.splitlines()]  # tables in list items are indented
  for i, line in enumerate(lines):
    cells = [c.strip() for c in line.strip("|").split("|")]
    if line.startswith("|") and cells[:len(first_headers)] == first_headers:
      rows = []
      for row in lines[i + 2:]:
        if not row.startswith("|"):
          break
        rows.append(dict(zip(cells, [c.strip() for c in row.strip().strip("|").split("|")])))
      return rows
  raise AssertionError(f"no table with header {first_headers}")


def code_block(text: str, containing: str) -> str:
  blocks = [b for b in re.findall(r"```[^\n]*\n(.*?)```", text, re.S) if containing in b]
  assert len(blocks) == 1, f"{len(blocks)} code blocks contain {containing!r}"
  return blocks[0]


# ---------------------------------------------------------------------------
# Comparing.

def as_printed(printed: str, value) -> tuple[bool, str]:
  """Does `value` print as `printed` at `printed`'s number of decimals?"""
  s = printed.replace(",", "").replace("−", "-")
  decimals = len(s.partition(".")[2])
  shown = f"{float(value):.{decimals}f}"
  return float(shown) == float(s), shown


class Checks:
  """Collects every disagreement, so that one run lists them all."""

  def __init__(self):
    self.errors: list[str] = []
    self.checked = 0

  def number(self, where: str, printed: str, value: V) -> None:
    self.checked += 1
    try:
      v = value.get()
    except KeyError as e:
      if printed.strip() == "-":  # common.format_table prints a missing field as -
        return
      self.errors.append(f"{where}: prints {printed}, but {value.where} cannot be read: {e!r}")
      return
    except (IndexError, LookupError, TypeError, AttributeError) as e:
      self.errors.append(f"{where}: prints {printed}, but {value.where} cannot be read: {e!r}")
      return
    if printed.strip() == "-":
      if v is not None:
        self.errors.append(f"{where}: prints -, but {value.where} = {v!r}")
      return
    if v is None:
      self.errors.append(f"{where}: prints {printed}, but {value.where} is None")
      return
    ok, shown = as_printed(printed, v)
    if not ok:
      self.errors.append(f"{where}: prints {printed}, but {value.where} = {v:.6g} "
                         f"(printed: {shown})")

  def claim(self, name: str, text: str, template: str, **values: V) -> None:
    """Every occurrence of `template` in `text`; each {slot} against values[slot]."""
    matches = list(re.finditer(template_regex(template), text))
    if not matches:
      self.errors.append(f"{name}: the words {template!r} are gone: point this check at the "
                         "new wording of that figure")
    for m in matches:
      for slot, value in values.items():
        self.number(f"{name}, {template!r}, {{{slot}}}", m.group(slot), value)

  def __enter__(self) -> "Checks":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.done()

  def done(self) -> None:
    assert self.checked, "nothing was checked"
    assert not self.errors, (f"{len(self.errors)} of {self.checked} published figures disagree "
                             "with their results files (fix the markdown; results files "
                             "are only written by scripts):\n  " + "\n  ".join(self.errors))


def norm_label(label: str) -> str:
  """'SpecCascade[token_v1] α = 0.2, γ = 5' -> 'spec_cascade[token_v1] α=0.2 γ=5'."""
  label = re.sub(r"\s*=\s*", "=", label.replace(",", ""))
  return re.sub(r"\s+", " ", label.replace("SpecCascade[", "spec_cascade[")).strip()


def by_tokens(labels, md_label: str) -> str:
  """The one script label that has every word of the markdown's shorter label."""
  want = set(norm_label(md_label).split())
  found = [lab for lab in labels if want <= set(lab.split())]
  assert len(found) == 1, f"{md_label!r} matches {found} of {list(labels)}"
  return found[0]
