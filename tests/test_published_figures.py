"""The figures README.md and BENCHMARKS.md publish, against the files they cite.

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
"""

from __future__ import annotations

import functools
import json
import operator
import os
import re
import statistics


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R = "benchmarks/results/"
SPEED, SPEED_B8 = R + "speed.json", R + "speed_b8.json"
SPEED_TXT, GAMMAS_TXT = R + "speed.txt", R + "speed_cascade_gammas.txt"
QUALITY, STEP_COST, ROUND_PROFILE = R + "quality.json", R + "step_cost.txt", R + "round_profile.txt"
LOOKUP_ESTIMATE = R + "lookup_estimate.txt"
VS_HF, VS_HF_G3, VS_HF_G3_RUN2, VS_HF_TXT = (R + "vs_hf.json", R + "vs_hf_gamma3.json",
                                            R + "vs_hf_gamma3_run2.json", R + "vs_hf.txt")
GPU, GPU_CMDBUF = R + "gpu_h200.json", R + "gpu_h200_command_buffer.json"
DEMO_SUMMARY, DEMO_RESULTS = "docs/demo/summary.json", "docs/demo/results.jsonl"
DATA = "spec_cascade_jax/assets/data/"
CORPUS, CORPUS_V2 = DATA + "gettext_en_de/manifest.json", DATA + "gettext_en_de_v2/manifest.json"
MODELS = "spec_cascade_jax/assets/models/"
VERIFIER_RECIPE = MODELS + "demo-verifier/recipe.json"
DRAFTER_RECIPE = MODELS + "demo-drafter/recipe.json"

NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?"


# ---------------------------------------------------------------------------
# Reading the files.

@functools.lru_cache(maxsize=None)
def _load(path: str):
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
    x = _load(path)
    for k in keys:
      x = x[k]
    return x
  return V(fn, f"{path} {'/'.join(map(str, keys))}")


def _one(rows, where: str, **match):
  found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
  if len(found) != 1:
    raise LookupError(f"{len(found)} rows with {match} in {where}")
  return found[0]


def row_value(path: str, rows_at: tuple, match: dict, key: str) -> V:
  def fn():
    rows = _load(path)
    for k in rows_at:
      rows = rows[k]
    return _one(rows, path, **match)[key]
  label = ", ".join(f"{v}" for v in match.values())
  return V(fn, f"{path} [{label}] {key}")


def speed(label: str, key: str, temp: str = "T=0", path: str = SPEED) -> V:
  return row_value(path, ("tables", temp), {"label": label}, key)


def vs_hf(path: str, name: str, key: str) -> V:
  return row_value(path, ("rows",), {"name": name}, key)


def quality(model: str, key: str) -> V:
  return row_value(QUALITY, ("rows",), {"model": model}, key)


def summary(curve: str, key: str) -> V:
  return row_value(DEMO_SUMMARY, ("tables", 0, "rows"), {"curve": curve}, key)


def demo_point(curve: str, alpha: float, metric: str | None = None) -> V:
  """A point of the main job (docs/demo/results.jsonl): its quality[metric], or
  its relative latency when metric is None."""
  def fn():
    recs = [r for r in _load(DEMO_RESULTS) if r.get("kind") == "point"
            and r["curve"] == curve and abs(r["alpha"] - alpha) < 1e-9]
    r = _one(recs, DEMO_RESULTS)
    return r["quality"][metric] if metric else r["relative_latency"]
  return V(fn, f"{DEMO_RESULTS} [{curve} α={alpha:g}] "
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
  tables = [(h, r) for t, h, r in fixed_tables(_load(path)) if title_has in t]
  assert len(tables) == 1, f"{path}: {len(tables)} tables titled {title_has!r}"
  return tables[0]


def txt_cell(path: str, title_has: str, label: str, column: str) -> V:
  """A cell of a table a script printed into a .txt results file."""
  def fn():
    header, rows = txt_table(path, title_has)
    return float(_one([dict(zip(header, r)) for r in rows], path, **{header[0]: label})[column])
  return V(fn, f"{path} [{title_has} {label}] {column}")


def txt_number(path: str, pattern: str) -> V:
  """The number a script printed after some words in a .txt results file."""
  def fn():
    m = re.search(pattern, _load(path))
    if not m:
      raise LookupError(f"{pattern!r} not in {path}")
    return float(m.group(1).replace(",", ""))
  return V(fn, f"{path} {pattern!r}")


def profile_blocks() -> list[dict]:
  """round_profile.txt: one dict per profiled decoding (title, info, the command
  above it, wall µs, µs per phase)."""
  blocks, cmd = [], ""
  for line in _load(ROUND_PROFILE).splitlines():
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
    b = _one([b for b in profile_blocks() if cmd_has in b["cmd"] and info_has in b["info"]],
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
  text = _load(name)
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


def _norm(label: str) -> str:
  """'SpecCascade[token_v1] α = 0.2, γ = 5' -> 'spec_cascade[token_v1] α=0.2 γ=5'."""
  label = re.sub(r"\s*=\s*", "=", label.replace(",", ""))
  return re.sub(r"\s+", " ", label.replace("SpecCascade[", "spec_cascade[")).strip()


def _by_tokens(labels, md_label: str) -> str:
  """The one script label that has every word of the markdown's shorter label."""
  want = set(_norm(md_label).split())
  found = [lab for lab in labels if want <= set(lab.split())]
  assert len(found) == 1, f"{md_label!r} matches {found} of {list(labels)}"
  return found[0]


# ---------------------------------------------------------------------------
# README.md

def test_readme():
  with Checks() as checks:
    main_job = doc("README.md", "## Two commands")
    checks.claim("README.md", main_job, "against the bundled verifier's {v}",
                 v=at(DEMO_SUMMARY, "tables", 0, "verifier_quality"))
    copy = [r for r in _load(DEMO_RESULTS) if r.get("kind") == "copy_baseline"]
    if copy:  # the committed docs/demo predates the copy line; once it has one:
      checks.claim("README.md", main_job, "{copy} BLEU against the bundled verifier's",
                   copy=V(lambda: copy[0]["quality"]["bleu"], f"{DEMO_RESULTS} copy_baseline"))
    data = doc("README.md", "### Data, vocabulary")
    checks.claim("README.md", data, "~{k}k English→German software messages",
                 k=at(CORPUS, "total") / 1000)
    checks.claim(
        "README.md", data, "{total} pairs from the German catalogs of {packages} pinned Debian "
        "packages, with an in-domain validation split ({valid}) and a **test split of {test} "
        "messages from {test_packages} source packages",
        total=at(CORPUS_V2, "total"), packages=at(CORPUS_V2, "num_packages"),
        valid=at(CORPUS_V2, "splits", "validation", "count"),
        test=at(CORPUS_V2, "splits", "test", "count"),
        test_packages=at(CORPUS_V2, "splits", "test", "packages"))


def test_readme_names_the_methods_the_demo_grid_leaves_out():
  """'every decoding method but X': X is what configs/demo.gin's grid lacks."""
  from spec_cascade_jax.evaluation import grids  # the standard library only
  readme = _load("README.md")
  methods = set(re.findall(r"`(\w+)`", re.search(r"`method` ∈ `scj.METHODS`:(.*?)\n- ",
                                                 readme, re.S).group(1)))
  left_out = methods - {c.method for c in grids.DEMO}
  assert left_out, "the demo grid runs every method: say so in README.md"
  said = re.findall(r"every\s+(?:decoding\s+)?method\s+but\s+((?:`\w+`(?:,\s+|\s+and\s+)?)+)",
                    readme)
  assert said, "README.md no longer says which methods the main job leaves out"
  for s in said:
    assert set(re.findall(r"`(\w+)`", s)) == left_out, (s, left_out)
  # The committed output is the demo grid's.
  curves = {r["curve"] for r in _load(DEMO_SUMMARY)["tables"][0]["rows"]}
  assert curves == {c.name for c in grids.DEMO}, (curves, {c.name for c in grids.DEMO})


def test_readme_points_to_the_gpu_results():
  """README must not say that no GPU numbers exist while BENCHMARKS.md has them."""
  sharded = doc("README.md", "### Sharded and multi-host")
  machine = _load(GPU)["machine"]
  assert machine["platform"] == "gpu"
  assert not re.search(r"No GPU or TPU\s+numbers have been measured", sharded)
  device = machine["device"].split()[-1]  # "NVIDIA H200" -> "H200"
  assert device in sharded and "BENCHMARKS.md" in sharded, (
      f"README.md (Sharded and multi-host decoding) should point to the {device} results")


# ---------------------------------------------------------------------------
# BENCHMARKS.md

def test_corpus_v2():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Issue 17")
    name = "BENCHMARKS.md (Issue 17, corpus)"
    m = CORPUS_V2
    checks.claim(name, text, "- {n} pinned packages", n=at(m, "num_packages"))
    checks.claim(name, text, "{n} catalogs; built", n=at(m, "num_catalogs"))
    checks.claim(name, text, "{raw} raw pairs → **{total} unique pairs**",
                 raw=at(m, "drops", "raw_pairs"), total=at(m, "total"))
    for words, key in [("{n} duplicate English", "duplicate"), ("{n} untranslated", "untranslated"),
                       ("{n} longer than", "too_long"),
                       ("{n} test-package copies", "test_overlap"),
                       ("{n} with letters on one side", "letters_one_side"),
                       ("{n} translator credits", "translator_credits"),
                       ("{n} whose format placeholders differ", "placeholders_differ"),
                       ("{n} with non-German plural", "plural_unknown_forms"),
                       ("{n} empty", "empty"), ("{n} unreadable catalogs", "unreadable_catalog")]:
      checks.claim(name, text, words, n=at(m, "drops", key))
    checks.claim(name, text, "longer than {n} characters", n=at(m, "max_chars"))
    checks.claim(name, text, "train {n} ({p} packages)", n=at(m, "splits", "train", "count"),
                 p=at(m, "splits", "train", "packages"))
    checks.claim(name, text, "validation {n} (in-domain", n=at(m, "splits", "validation", "count"))
    checks.claim(name, text, "**test {n} ({pct}%) from {p} source packages",
                 n=at(m, "splits", "test", "count"),
                 pct=at(m, "splits", "test", "count") / at(m, "total") * 100,
                 p=at(m, "splits", "test", "packages"))
    gz = (at(m, "splits", "train", "bytes") + at(m, "splits", "validation", "bytes")
          + at(m, "splits", "test", "bytes")) / 1e6
    checks.claim(name, text, "{mb} MB gzip in the package", mb=gz)
    # The copy baseline's example counts are the splits' sizes.
    for row in md_table(text, ["corpus", "split", "examples"]):
      manifest = CORPUS_V2 if row["corpus"].startswith("gettext_en_de_v2") else CORPUS
      split = "test" if row["split"].startswith("test") else "validation"
      checks.number(f"{name}: copy baseline, {row['corpus']} {split}, examples", row["examples"],
                    at(manifest, "splits", split, "count"))


def test_bundled_pair_quality():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: quality")
    name = "BENCHMARKS.md (Bundled pair: quality)"
    columns = {"d_model": "d_model", "params": "params_M", "on disk": "disk_MiB",
               "validation BLEU": "validation_bleu", "validation chrF": "validation_chrf",
               "test BLEU": "test_bleu", "test chrF": "test_chrf"}
    for row in md_table(text, ["model", "layers", "d_model"]):
      assert row["layers"] == _one(_load(QUALITY)["rows"], QUALITY, model=row["model"])["layers"]
      for header, cell in row.items():
        key = next((k for h, k in columns.items() if header.startswith(h)), None)
        if key:
          checks.number(f"{name}: table, {row['model']}, {header}", number(cell),
                        quality(row["model"], key))
    for header, split in [("validation BLEU ({n})", "validation"), ("test BLEU ({n})", "test")]:
      checks.claim(name, text, header, n=at(CORPUS, "splits", split, "count"))
    v, d = "demo-verifier", "demo-drafter"
    checks.claim(name, text, "leads by **{val} BLEU on validation** ({test} on test) and by "
                 "{chrf} chrF; together the pair takes {mib} MiB",
                 val=quality(v, "validation_bleu") - quality(d, "validation_bleu"),
                 test=quality(v, "test_bleu") - quality(d, "test_bleu"),
                 chrf=quality(v, "validation_chrf") - quality(d, "validation_chrf"),
                 mib=quality(v, "disk_MiB") + quality(d, "disk_MiB"))
    checks.claim(name, text, "validation examples is {d} / {v}:",
                 d=quality(d, "validation100_bleu"), v=quality(v, "validation100_bleu"))
    checks.claim(name, text, "validation split: **{pct}%**, the per-token acceptance",
                 pct=at(QUALITY, "agreement") * 100)
    speed_sec = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    checks.claim("BENCHMARKS.md (speed)", speed_sec, "verifier's greedy token on {pct}% of tokens",
                 pct=at(QUALITY, "agreement") * 100)
    checks.claim("BENCHMARKS.md (speed)", speed_sec, "raised agreement from 23.6% to {pct}% and "
                 "its own validation BLEU from 9.46 to {bleu}",
                 pct=at(QUALITY, "agreement") * 100, bleu=quality(d, "validation_bleu"))


def test_bundled_pair_training():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: quality")
    name = "BENCHMARKS.md (training)"
    stage1, stage2, dr = (at(VERIFIER_RECIPE, "init_recipe", "steps"),
                          at(VERIFIER_RECIPE, "steps"), at(DRAFTER_RECIPE, "steps"))
    s1_min = at(VERIFIER_RECIPE, "init_recipe", "wall_time_s") / 60
    s2_min = at(VERIFIER_RECIPE, "wall_time_s") / 60
    checks.claim(name, text, "{steps} steps from scratch, **{min} min** wall (quiet), validation "
                 "loss {loss};", steps=stage1, min=s1_min,
                 loss=at(VERIFIER_RECIPE, "init_recipe", "final_eval", "valid_loss"))
    checks.claim(name, text, "loss continues from {loss}) and trains {steps} steps",
                 loss=at(VERIFIER_RECIPE, "init_recipe", "final_eval", "valid_loss"), steps=stage2)
    checks.claim(name, text, "**{min} min** wall, validation loss {loss}; stored in bfloat16 (BLEU "
                 "on the recipe's {n} examples {f32} in float32, {stored} as stored)",
                 min=s2_min, loss=at(VERIFIER_RECIPE, "final_eval", "valid_loss"),
                 n=at(VERIFIER_RECIPE, "final_eval_stored", "examples"),
                 f32=at(VERIFIER_RECIPE, "final_eval", "valid_bleu"),
                 stored=at(VERIFIER_RECIPE, "final_eval_stored", "valid_bleu"))
    checks.claim(name, text, "takes **{min} min** of quiet 2-core time", min=s1_min + s2_min)
    distill = lambda k: at(DRAFTER_RECIPE, "distill", k)  # noqa: E731
    checks.claim(name, text, "greedy outputs for the {n} training inputs ({min} min), of which "
                 "{teacher} are used as targets and {ref} fall back to the reference ({no_eos} "
                 "never end within {max_new} tokens, {loop} loop), then {steps} steps from scratch "
                 "({train_min} min): **{all_min} min** in all, validation loss against the "
                 "references {loss}",
                 n=distill("examples"), min=distill("wall_time_s") / 60,
                 teacher=distill("teacher_targets"),
                 ref=distill("reference_no_eos") + distill("reference_loop"),
                 no_eos=distill("reference_no_eos"), max_new=distill("max_new_tokens"),
                 loop=distill("reference_loop"), steps=dr,
                 train_min=at(DRAFTER_RECIPE, "wall_time_s") / 60,
                 all_min=(at(DRAFTER_RECIPE, "wall_time_s") + distill("wall_time_s")) / 60,
                 loss=at(DRAFTER_RECIPE, "final_eval", "valid_loss"))


def test_step_cost():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: quality")
    name = "BENCHMARKS.md (step cost)"
    assert STEP_COST in text
    for row in md_table(text, ["call", "standalone ms", "in a loop ms"]):
      call = re.escape(row["call"].replace(" = ", "="))
      checks.number(f"{name}: table, {row['call']}, standalone ms", row["standalone ms"],
                    txt_number(STEP_COST, call + r"\s+([\d.]+)\s+[\d.]+"))
      checks.number(f"{name}: table, {row['call']}, in a loop ms", row["in a loop ms"],
                    txt_number(STEP_COST, call + r"\s+[\d.]+\s+([\d.]+)"))
    checks.claim(name, text, "step-cost ratio: {a} standalone, {b} in a loop",
                 a=txt_number(STEP_COST, r"step cost ratio: ([\d.]+) standalone"),
                 b=txt_number(STEP_COST, r"step cost ratio: [\d.]+ standalone, ([\d.]+) in a loop"))
    checks.claim(name, text, "chunk costs {n} verifier steps",
                 n=txt_number(STEP_COST, r"chunk / step: [\d.]+ standalone, ([\d.]+) in a loop"))
    checks.claim(name, text, "take {inter} ms when interleaved in one loop, as the kernel runs "
                 "them, {pct}% more than the parts apart ({apart} ms;",
                 inter=txt_number(STEP_COST, r"interleaved ([\d.]+) ms"),
                 pct=txt_number(STEP_COST, r"\(\+(\d+)%\)"),
                 apart=txt_number(STEP_COST, r"= ([\d.]+) ms apart"))


def test_demo_sweep():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Trade-off sweep")
    name = "BENCHMARKS.md (Trade-off sweep)"
    assert "docs/demo/summary.md" in text
    context = _one(_load(DEMO_RESULTS), DEMO_RESULTS, kind="sweep")["context"]
    checks.claim(name, text, "BLEU on {n} validation examples",
                 n=V(lambda: context["num_quality_examples"], f"{DEMO_RESULTS} sweep context"))
    checks.claim(name, text, "batch-1 latency on {n} (median of {r}",
                 n=V(lambda: context["num_latency_examples"], f"{DEMO_RESULTS} sweep context"),
                 r=V(lambda: context["repeats"], f"{DEMO_RESULTS} sweep context"))
    table0 = ("tables", 0)
    checks.claim(name, text, "the verifier scores {v} BLEU and the drafter {d} (on the whole "
                 "split: {qv} and {qd})", v=at(DEMO_SUMMARY, *table0, "verifier_quality"),
                 d=at(DEMO_SUMMARY, *table0, "drafter_quality"),
                 qv=quality("demo-verifier", "validation_bleu"),
                 qd=quality("demo-drafter", "validation_bleu"))
    aliases = {"speculative decoding": "SpecDecode"}
    rows = md_table(text, ["method", "relative latency (α)", "speed-up"])
    shown = set()
    for row in rows:
      label = re.sub(r"\s*\(.*\)$", "", row["method"])
      curve = aliases.get(label, label)
      shown.add(curve)
      cell = row["relative latency (α)"]
      checks.number(f"{name}: table, {curve}, relative latency", number(cell),
                    summary(curve, "latency_at_verifier_quality"))
      alpha = re.search(r"\((" + NUMBER + r")\)", cell)
      if alpha:
        checks.number(f"{name}: table, {curve}, α", alpha.group(1),
                      summary(curve, "matched_alpha"))
      checks.number(f"{name}: table, {curve}, speed-up", number(row["speed-up"]),
                    summary(curve, "speedup_at_verifier_quality"))
    reached = {r["curve"] for r in _load(DEMO_SUMMARY)["tables"][0]["rows"]
               if r["latency_at_verifier_quality"] is not None and r["method"] != "verifier"}
    assert shown == reached, (f"{name}: the table lists {sorted(shown)}; "
                              f"{DEMO_SUMMARY} reaches the verifier's BLEU with {sorted(reached)}")
    lookup = [speed("prompt lookup n=3 γ=7", "speedup_median"),
              speed("prompt lookup n=3 γ=5", "speedup_median", path=SPEED_B8),
              speed("prompt lookup n=3 γ=7", "speedup_median", path=SPEED_B8)]
    checks.claim(name, text,
                 "prompt lookup is {main}× here and {lo}–{hi}× in the interleaved runs",
                 main=summary("PromptLookup", "speedup_at_verifier_quality"),
                 lo=range_of(lookup, min), hi=range_of(lookup, max))
    checks.claim(name, text, "SpecCascade[token_v2] reaches {q2} BLEU at {l2} of the verifier's "
                 "latency, [token_v1] {q1} at {l1}, [opt] {qo} at {lo} and [diff] {qd} at {ld}",
                 q2=summary("SpecCascade[token_v2]", "best_quality"),
                 l2=summary("SpecCascade[token_v2]", "best_relative_latency"),
                 q1=summary("SpecCascade[token_v1]", "best_quality"),
                 l1=summary("SpecCascade[token_v1]", "best_relative_latency"),
                 qo=summary("SpecCascade[opt]", "best_quality"),
                 lo=summary("SpecCascade[opt]", "best_relative_latency"),
                 qd=summary("SpecCascade[diff]", "best_quality"),
                 ld=summary("SpecCascade[diff]", "best_relative_latency"))
    lengths = [summary(c, "best_relative_length") for c in (
        "SpecCascade[token_v1]", "SpecCascade[token_v2]", "SpecCascade[opt]",
        "SpecCascade[diff]")]
    checks.claim(name, text, "their outputs are {lo}–{hi} of the verifier's",
                 lo=range_of(lengths, min), hi=range_of(lengths, max))
    checks.claim(name, text, "copying the input scores {c}",
                 c=at(DEMO_SUMMARY, *table0, "copy_quality"))
    checks.claim(name, text, "[token_v1] at\nα 0.2: {l} with 95% interval [{lo}, {hi}]",
                 l=demo_point("SpecCascade[token_v1]", 0.2),
                 lo=V(lambda: _one([r for r in _load(DEMO_RESULTS) if r.get("kind") == "point"],
                                   DEMO_RESULTS, curve="SpecCascade[token_v1]", alpha=0.2)[
                     "relative_latency_interval"][0], f"{DEMO_RESULTS} [token_v1 α=0.2] interval"),
                 hi=V(lambda: _one([r for r in _load(DEMO_RESULTS) if r.get("kind") == "point"],
                                   DEMO_RESULTS, curve="SpecCascade[token_v1]", alpha=0.2)[
                     "relative_latency_interval"][1], f"{DEMO_RESULTS} [token_v1 α=0.2] interval"))
    checks.claim(name, text, "Lossless speculative decoding with the drafter is {x}× *slower*",
                 x=summary("SpecDecode", "latency_at_verifier_quality"))
    # The speed section's paragraph on the main job's α grid.
    speed_sec = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    v1 = "SpecCascade[token_v1]"
    alphas = lambda: sorted(p["alpha"] for p in _load(DEMO_SUMMARY)["points"]  # noqa: E731
                            if p["curve"] == v1)
    alpha = lambda i: V(lambda: alphas()[i], f"{DEMO_SUMMARY} points: {v1} α[{i}]")  # noqa: E731
    largest = lambda metric=None: V(  # noqa: E731
        lambda: demo_point(v1, alphas()[-1], metric).get(),
        f"{DEMO_RESULTS} [{v1}, largest α] " + (f"quality/{metric}" if metric else
                                                "relative_latency"))
    checks.claim("BENCHMARKS.md (speed)", speed_sec,
                 "α grid ({a}, {b}, {c}) puts the match at {m}: {q} BLEU against the "
                 "verifier's {qv}; α = {hi} is worse ({qhi}) at about the same latency ({lhi} "
                 "against {lm})",
                 a=alpha(0), b=alpha(1), c=alpha(2), hi=alpha(-1),
                 m=summary(v1, "matched_alpha"), q=summary(v1, "matched_quality"),
                 qv=at(DEMO_SUMMARY, *table0, "verifier_quality"),
                 qhi=largest("bleu"), lhi=largest(),
                 lm=summary(v1, "latency_at_verifier_quality"))


SPEED_COLUMNS = {"ms/ex (med)": "ms_per_example", "× (med)": "speedup_median",
                 "× (min)": "speedup_min", "tok/call": "tokens_per_call", "accept": "acceptance",
                 "≠verif": "mismatches", "compile s": "compile_s"}


def _speed_column(header: str) -> str:
  m = re.fullmatch(r"(tok/s|×) b(\d+)", header)
  if m:
    return ("tok_s_b" if m.group(1) == "tok/s" else "x_b") + m.group(2)
  return SPEED_COLUMNS[header]


def test_speed_table():
  """The `speed.py` output pasted into BENCHMARKS.md is speed.json's."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    assert f"--json {SPEED}" in text
    block = code_block(text, "## temperature 0")
    info = _load(SPEED)["machine"]
    head = block.splitlines()[0]
    assert head.startswith(f"# {info['date']}") and f"load {info['load_avg_1m']}" in head, (
        f"BENCHMARKS.md (speed): the pasted output's header {head!r} is not {SPEED}'s run "
        f"({info['date']}, load {info['load_avg_1m']})")
    tables = fixed_tables(block)
    temp_of = lambda title: "T={:g}".format(  # noqa: E731
        float(re.search(r"temperature ([\d.]+)", title).group(1)))
    assert sorted(temp_of(t) for t, _, _ in tables) == sorted(_load(SPEED)["tables"])
    for title, header, rows in tables:
      temp = temp_of(title)
      assert [r[0] for r in rows] == [r["label"] for r in _load(SPEED)["tables"][temp]]
      for r in rows:
        for h, cell in zip(header[1:], r[1:]):
          checks.number(f"BENCHMARKS.md (speed output, {temp}), {r[0]}, {h}", cell,
                        speed(r[0], _speed_column(h), temp))


def test_speed_prose():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    name = "BENCHMARKS.md (speed)"
    lookup = "prompt lookup n=3 γ=7"
    checks.claim(name, text, "Verifier-only throughput at batch 8 was 700, {a} and {b} tokens/s",
                 a=speed("verifier", "tok_s_b8"),
                 b=txt_cell(SPEED_TXT, "temperature 0", "verifier", "tok/s b8"))
    checks.claim(name, text, "Prompt lookup at T = 1 shows {x}× at batch 8 with nothing drafted "
                 "({tpc} tokens per call)", x=speed(lookup, "x_b8", "T=1"),
                 tpc=speed(lookup, "tokens_per_call", "T=1"))
    assert f"--json {SPEED_B8}" in text
    b8_labels = [r["label"] for r in _load(SPEED_B8)["tables"]["T=0"]]
    for row in md_table(text, ["method (greedy)", "batch 1 ×"]):
      label = _by_tokens(b8_labels, row["method (greedy)"])
      where = f"{name}: batch-8 table, {row['method (greedy)']}"
      b1 = row["batch 1 ×"]
      checks.number(f"{where}, batch 1 ×", number(b1),
                    speed(label, "speedup_median", path=SPEED_B8))
      m = re.search(rf"({NUMBER}) ms/ex", b1)
      if m:
        checks.number(f"{where}, ms/ex", m.group(1), speed(label, "ms_per_example", path=SPEED_B8))
      m = re.search(rf"({NUMBER})% accepted", b1)
      if m:
        checks.number(f"{where}, accepted", m.group(1),
                      speed(label, "acceptance", path=SPEED_B8) * 100)
      checks.number(f"{where}, batch 8 tokens/s", number(row["batch 8 tokens/s"]),
                    speed(label, "tok_s_b8", path=SPEED_B8))
      checks.number(f"{where}, batch 8 ×", number(row["batch 8 ×"]),
                    speed(label, "x_b8", path=SPEED_B8))
    spec3 = "speculative γ=3"
    checks.claim(name, text, "the drafter is accepted less ({b8}% against {b1}%)",
                 b8=speed(spec3, "acceptance", path=SPEED_B8) * 100,
                 b1=speed(spec3, "acceptance") * 100)
    # The targets table.
    v1 = "spec_cascade[token_v1] α=0.2 γ=5"
    checks.claim(name, text, "with the drafter {x}× (γ = 3); **prompt lookup {l}×** (16 and 64 "
                 "examples)", x=speed(spec3, "speedup_median"), l=speed(lookup, "speedup_median"))
    checks.claim(name, text, "**prompt lookup {l}×** (16 and 64 examples)",
                 l=speed(lookup, "speedup_median", path=SPEED_B8))
    checks.claim(name, text, "**{lo}–1.82×** (SpecCascade[token_v1] α = 0.2; two runs this "
                 "evening; {aft}× in the afternoon)", lo=speed(v1, "speedup_median"),
                 aft=txt_cell(SPEED_TXT, "temperature 0", v1, "× (med)"))
    gammas = [txt_cell(GAMMAS_TXT, "temperature 0", f"spec_cascade[token_v1] α=0.2 γ={g}",
                       "× (med)") for g in (2, 3, 4, 5, 7)]
    checks.claim(name, text, "any γ from 2 to 7: {lo}–{hi}×", lo=range_of(gammas, min),
                 hi=range_of(gammas, max))
    checks.claim(name, text, "prompt lookup **{b8}×** (64 examples; {b16}–1.19× on 16); "
                 "{d64}× (64 examples) and {d16}× (16) with the drafter",
                 b8=speed(lookup, "x_b8", path=SPEED_B8), b16=speed(lookup, "x_b8"),
                 d64=speed(spec3, "x_b8", path=SPEED_B8), d16=speed(spec3, "x_b8"))
    # The cascade's γ.
    assert GAMMAS_TXT in text
    header, rows = txt_table(GAMMAS_TXT, "temperature 0")
    by_gamma = {re.search(r"γ=(\d+)$", r[0]).group(1): dict(zip(header, r)) for r in rows
                if r[0].startswith("spec_cascade[token_v1]")}
    table = md_table(text, ["γ"])
    for row in table:
      column = {"tokens per verifier call": "tok/call", "× verifier-only": "× (med)"}[row["γ"]]
      for g, cell in row.items():
        if g != "γ":
          checks.number(f"{name}: cascade γ table, γ = {g}, {row['γ']}", cell,
                        V(lambda g=g, column=column: float(by_gamma[g][column]),
                          f"{GAMMAS_TXT} [token_v1 γ={g}] {column}"))
    checks.claim(name, text, "14:43, speculative γ = 3 {s}×, prompt lookup {l}×, token_v1 "
                 "{v}×, batch 8 lookup {b}×",
                 s=txt_cell(SPEED_TXT, "temperature 0", spec3, "× (med)"),
                 l=txt_cell(SPEED_TXT, "temperature 0", lookup, "× (med)"),
                 v=txt_cell(SPEED_TXT, "temperature 0", v1, "× (med)"),
                 b=txt_cell(SPEED_TXT, "temperature 0", lookup, "× b8"))
    checks.claim(name, text, "accepts {pct}% of drafts at γ = 3 ({tpc} tokens per verifier call)",
                 pct=speed(spec3, "acceptance") * 100, tpc=speed(spec3, "tokens_per_call"))
    checks.claim(name, text, "rejected drafts are wasted, hence {x}× (`speed.json`; {x64}× on "
                 "the 64 examples of `speed_b8.json`)",
                 x=speed(spec3, "x_b8"), x64=speed(spec3, "x_b8", path=SPEED_B8))
    checks.claim(name, text, "token_v1 at α = 0.2 keeps {pct}% of drafts ({tpc} tokens per call)",
                 pct=speed(v1, "acceptance") * 100, tpc=speed(v1, "tokens_per_call"))
    checks.claim(name, text, "Its {main}× (main job) to {sp}× (`speed.py`) per example",
                 main=summary("SpecCascade[token_v1]", "speedup_at_verifier_quality"),
                 sp=speed(v1, "speedup_median"))


def test_round_profile():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    name = "BENCHMARKS.md (round profile)"
    assert ROUND_PROFILE in text
    rows = md_table(text, ["decoding", "wall per round"])
    titles = {"verifier-only, per token": "verifier γ=3"}
    columns = {"verifier model": "verifier", "drafter model": "drafter", "encoders": "encoders",
               "kernel's own work": "kernel"}
    for row in rows:
      label = re.sub(r"\s*\(.*\)$", "", row["decoding"])
      title = titles.get(label, _norm(label))
      get = functools.partial(profile, title, info_has="16 examples")
      where = f"{name}: table, {row['decoding']}"
      checks.number(f"{where}, wall", number(row["wall per round"]), get("wall_us") / 1000)
      tpr = re.search(rf"\(({NUMBER}) tokens per round\)", row["decoding"])
      if tpr:
        checks.number(f"{where}, tokens per round", tpr.group(1), get("tokens_per_round"))
      for header, what in columns.items():
        if row[header] == "-":
          assert get(what).get() == 0, f"{where}, {header}: prints -, but {get(what).where} > 0"
        else:
          checks.number(f"{where}, {header}", number(row[header]), get(what))
    spec = functools.partial(profile, "speculative γ=3", info_has="16 examples")
    verif = functools.partial(profile, "verifier γ=3", info_has="16 examples")
    casc = functools.partial(profile, "spec_cascade[token_v1] α=0.2 γ=5", info_has="16 examples")
    checks.claim(name, text, "to yield {s} / {v} ≈ {t} tokens just to break even",
                 s=spec("wall_us") / 1000, v=verif("wall_us") / 1000,
                 t=spec("wall_us") / verif("wall_us"))
    checks.claim(name, text, "against the {t} it gets", t=spec("tokens_per_round"))
    checks.claim(name, text, "{c} ms / {t} = {pt} ms against {v} ms",
                 c=casc("wall_us") / 1000, t=casc("tokens_per_round"),
                 pt=casc("wall_us") / casc("tokens_per_round") / 1000, v=verif("wall_us") / 1000)
    checks.claim(name, text, "{c} tokens on these 16 examples against the verifier's {v}",
                 c=casc("tokens"), v=verif("tokens"))
    lookup = "prompt_lookup γ=7"
    new = functools.partial(profile, lookup, cmd_has="two inner while loops")
    old = functools.partial(profile, lookup, cmd_has="first version")
    checks.claim(name, text, "- {new} µs per round ({old} with the conditional",
                 new=new("wall_us"), old=old("wall_us"))
    checks.claim(name, text, "earlier), {t} tokens per round", t=new("tokens_per_round"))
    checks.claim(name, text, "- {n} of the {r} rounds", r=new("rounds"))
    checks.claim(name, text, "commit 154 of the {t} tokens; {pct}% of drafted tokens are accepted",
                 t=new("tokens"), pct=speed("prompt lookup n=3 γ=7", "acceptance") * 100)
    phase = lambda p: V(lambda: _one(  # noqa: E731
        [b for b in profile_blocks() if "two inner while loops" in b["cmd"]], ROUND_PROFILE,
        title=lookup)["phases"][p], f"{ROUND_PROFILE} [{lookup}, two inner while loops] {p}")
    checks.claim(name, text, "plain steps {s} µs, the 8-token chunks {c} µs, the encoder {e} µs "
                 "({pct}%", s=phase("step/model"), c=phase("verify/model"), e=phase("encode/model"),
                 pct=new("encoders"))
    b8 = functools.partial(profile, cmd_has="--batch 8", info_has="batches of 8")
    checks.claim(name, text, "{n} loop iterations against verifier-only decoding's {m}",
                 n=b8(lookup, "rounds"), m=b8("verifier γ=7", "steps"))
    checks.claim(name, text, "a verifier-only step's {ms} ms",
                 ms=V(lambda: _one(profile_blocks(), ROUND_PROFILE, title="verifier γ=7")[
                     "phases"]["step/model"] / 1000, f"{ROUND_PROFILE} [verifier γ=7] step/model"))
    checks.claim(name, text, "examples: {l} ms × {n} against {v} ms × {m}, {x}×",
                 l=b8(lookup, "wall_us") / 1000, n=b8(lookup, "rounds"),
                 v=b8("verifier γ=7", "wall_us") / 1000, m=b8("verifier γ=7", "steps"),
                 x=b8("verifier γ=7", "wall_us") * b8("verifier γ=7", "steps")
                 / (b8(lookup, "wall_us") * b8(lookup, "rounds")))


def test_prompt_lookup():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    name = "BENCHMARKS.md (prompt lookup)"
    lookup = "prompt lookup n=3 γ=7"
    hf = [vs_hf(path, "ours verifier", "ms") / vs_hf(path, "ours prompt lookup γ=7 n=3", "ms")
          for path in (VS_HF, VS_HF_G3, VS_HF_G3_RUN2)]
    for row in md_table(text, ["where", "examples", "× verifier-only (afternoon)"]):
      where, r = f"{name}: table, {row['where']}", row
      if "`speed.py` (above)" in r["where"]:
        now, tpc, n = (speed(lookup, "speedup_median"), speed(lookup, "tokens_per_call"),
                       at(SPEED, "args", "examples"))
        checks.number(f"{where}, afternoon", r["× verifier-only (afternoon)"],
                      txt_cell(SPEED_TXT, "temperature 0", lookup, "× (med)"))
      elif "batch 8 run" in r["where"]:
        now, tpc, n = (speed(lookup, "speedup_median", path=SPEED_B8),
                       speed(lookup, "tokens_per_call", path=SPEED_B8),
                       at(SPEED_B8, "args", "examples"))
      elif "`vs_hf.py`" in r["where"]:
        lo, hi = re.fullmatch(rf"({NUMBER})–({NUMBER})", r["× now"]).groups()
        checks.number(f"{where}, now (lowest)", lo, range_of(hf, min))
        checks.number(f"{where}, now (highest)", hi, range_of(hf, max))
        checks.number(f"{where}, examples", r["examples"], at(VS_HF, "args", "examples"))
        txt = _load(VS_HF_TXT)
        ms = lambda name: float(re.search(re.escape(name) + r"\s+([\d.]+)", txt).group(1))  # noqa
        checks.number(f"{where}, afternoon", r["× verifier-only (afternoon)"], V(
            lambda: ms("ours verifier") / ms("ours prompt lookup γ=7 n=3"),
            f"{VS_HF_TXT} ours verifier / ours prompt lookup ms"))
        continue
      elif "main job" in r["where"]:
        checks.number(f"{where}, now", r["× now"],
                      summary("PromptLookup", "speedup_at_verifier_quality"))
        checks.number(f"{where}, examples", r["examples"], V(
            lambda: _one(_load(DEMO_RESULTS), DEMO_RESULTS, kind="sweep")["context"][
                "num_latency_examples"], f"{DEMO_RESULTS} num_latency_examples"))
        continue
      else:
        raise AssertionError(f"{where}: which results file is this row from?")
      checks.number(f"{where}, now", r["× now"], now)
      checks.number(f"{where}, tokens per call", r["tokens per verifier call"], tpc)
      checks.number(f"{where}, examples", r["examples"], n)
    estimates = lambda: [float(r[-1]) for r in txt_table(LOOKUP_ESTIMATE)[1]  # noqa: E731
                         if r[0] == "lookup+verifier"]
    checks.claim(name, text, "had predicted {lo}–{hi}×",
                 lo=V(lambda: min(estimates()), f"{LOOKUP_ESTIMATE} lowest lookup+verifier"),
                 hi=V(lambda: max(estimates()), f"{LOOKUP_ESTIMATE} highest lookup+verifier"))
    checks.claim(name, text, "rarely repeat a 3-gram: {tpc} tokens per call, {x}×",
                 tpc=speed(lookup, "tokens_per_call", "T=1"),
                 x=speed(lookup, "speedup_median", "T=1"))
    checks.claim(name, text, "At batch 8 it was {aft}× in the afternoon and is {now}× now (64 "
                 "examples; {lo}–1.19× on 16), at batch 32 {b32lo}–{b32hi}×",
                 aft=txt_cell(SPEED_TXT, "temperature 0", lookup, "× b8"),
                 now=speed(lookup, "x_b8", path=SPEED_B8), lo=speed(lookup, "x_b8"),
                 b32lo=txt_cell(SPEED_TXT, "temperature 0", lookup, "× b32"),
                 b32hi=speed(lookup, "x_b32"))


def test_vs_hf():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Against Hugging Face")
    name = "BENCHMARKS.md (vs HF)"
    cited = dict(re.findall(r"--gamma (\d+) .*?--json (\S+)", text))
    assert cited, f"{name}: no `vs_hf.py ... --json FILE` command"
    columns = {"ms/ex (med)": "ms", "ms/ex (min)": "ms_min", "tok/s": "tok_s",
               "HF / ours": "hf_over_ours", "≠ours-verifier": "mismatches"}
    block = code_block(text, "HF / ours")
    tables = fixed_tables(block)
    assert len(tables) == len(cited)
    for title, header, rows in tables:
      gamma, hhmm = re.search(r"γ = (\d+) \((\d\d:\d\d)\)", title).groups()
      path = cited[gamma]
      assert _load(path)["args"]["gamma"] == int(gamma)
      assert _load(path)["machine"]["date"][11:16] == hhmm, (
          f"{name}: the γ = {gamma} output is labelled {hhmm}; {path} is of "
          f"{_load(path)['machine']['date']}")
      assert [r[0] for r in rows] == [r["name"] for r in _load(path)["rows"]]
      for r in rows:
        for h, cell in zip(header[1:], r[1:]):
          checks.number(f"{name}: output γ = {gamma}, {r[0]}, {h}", cell,
                        vs_hf(path, r[0], columns[h]))
    g3 = lambda n, k="ms": vs_hf(VS_HF_G3, n, k)  # noqa: E731
    g5 = lambda n, k="ms": vs_hf(VS_HF, n, k)  # noqa: E731
    run2 = lambda n, k="ms": vs_hf(VS_HF_G3_RUN2, n, k)  # noqa: E731
    const3, const5, ours_lookup = "HF assisted (γ=3 constant)", "HF assisted (γ=5 constant)", \
        "ours prompt lookup γ=7 n=3"
    checks.claim(name, text, "at γ = 3 our speculative decoding is **{x}×**",
                 x=g3(const3, "hf_over_ours"))
    checks.claim(name, text, "({x}× against HF's defaults)", x=g3("HF assisted (defaults)",
                                                                    "hf_over_ours"))
    checks.claim(name, text, "(ours {o}, HF {h} ms per example: {x}×; {d}× against HF's "
                 "defaults; `benchmarks/results/vs_hf_gamma3_run2.json`)",
                 o=run2("ours speculative"), h=run2(const3), x=run2(const3, "hf_over_ours"),
                 d=run2("HF assisted (defaults)", "hf_over_ours"))
    assert VS_HF_G3_RUN2 in text
    checks.claim(name, text, "At γ = 5 it is {x}×", x=g5(const5, "hf_over_ours"))
    hf_ms = [g3(const3), g3("HF assisted (defaults)"), g5(const5), g5("HF assisted (defaults)")]
    checks.claim(name, text, "({lo}–{hi} ms per example at γ = 3, 5 and its defaults",
                 lo=range_of(hf_ms, min), hi=range_of(hf_ms, max))
    checks.claim(name, text, "and γ = 5 {x}× (14:53)",
                 x=txt_number(VS_HF_TXT,
                              r"HF assisted \(γ=5 constant\)(?:\s+[\d.]+){3}\s+([\d.]+)"))
    lk = [g("HF prompt lookup γ=7 n≤3", "hf_over_ours") for g in (g3, g5)]
    gr = [g3("HF greedy", "hf_over_ours"), g5("HF greedy", "hf_over_ours")]
    checks.claim(name, text, "Our prompt lookup is {a}–{b}× faster than HF's; our greedy "
                 "decoding {c}–{d}× faster", a=range_of(lk, min), b=range_of(lk, max),
                 c=range_of(gr, min), d=range_of(gr, max))
    checks.claim(name, text, "**{x}×** faster than HF assisted generation with the same verifier "
                 "({h} against {o} ms per example) and {v}× faster than our verifier alone; HF's "
                 "assisted generation is {s}× *slower* than HF greedy",
                 x=g3("HF assisted (defaults)") / g3(ours_lookup), h=g3("HF assisted (defaults)"),
                 o=g3(ours_lookup), v=g3("ours verifier") / g3(ours_lookup),
                 s=g3("HF assisted (defaults)") / g3("HF greedy"))
    checks.claim(name, text, "ours at batch 8 gives {b8} tokens/s (γ = 3) against {b1} at batch 1",
                 b8=g3("ours speculative, batch 8", "tok_s"), b1=g3("ours speculative", "tok_s"))


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
    for key in _load(path):
      assert f'"{key}"' in source, f"{path}: {key!r} is not a field benchmarks/gpu.py writes"


DEMO_AB = R + "demo_ab.json"


def _ab_claim(checks, name, text, lead, path):
  """'{lead} {k} of {n} points agree within 7%, …' against a compare_sweeps.py file."""
  devs = lambda: [abs(r["b_over_a"] - 1.0) for r in _load(path)["rows"]]  # noqa: E731
  checks.claim(name, text, lead + " {k} of {n} points agree within 7%, the median "
               "disagreement is {med}%, the largest {top}%",
               k=V(lambda: sum(d <= 0.07 for d in devs()), f"{path} rows within 7%"),
               n=V(lambda: len(devs()), f"{path} rows"),
               med=V(lambda: 100 * statistics.median(devs()), f"{path} median |B/A − 1|"),
               top=V(lambda: 100 * _load(path)["max_abs_deviation"],
                     f"{path} max_abs_deviation"))
  assert not _load(path)["quality_differs"], f"{path}: the runs decoded different tokens"


def test_two_main_job_runs():
  """The issue-16 comparisons of main-job runs (benchmarks/compare_sweeps.py):
  the first pair, and the third run (one collection per point) against the second."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Main job: do two fresh runs agree?")
    name = "BENCHMARKS.md (two main-job runs)"
    _ab_claim(checks, name, text, "at T = 0.", DEMO_AB)
    _ab_claim(checks, name, text, "against the second:", R + "demo_ab_pointgc.json")


LM_VS_HF, LM_VS_HF_TORCH1 = R + "lm_vs_hf.json", R + "lm_vs_hf_torch1.json"


def test_lm_vs_hf():
  """The decoder-only comparison with HF assisted generation (benchmarks/lm_vs_hf.py)."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Decoder-only LMs against Hugging Face")
    name = "BENCHMARKS.md (decoder-only LMs vs HF)"
    run = _load(LM_VS_HF)
    assert run["command"] in text, f"{name}: the command of {LM_VS_HF} is not quoted"
    info = run["machine"]
    head = code_block(text, "# 20").splitlines()[0]
    assert head.startswith(f"# {info['date']}") and f"load {info['load_avg_1m']}" in head, (
        f"{name}: the pasted output's header {head!r} is not {LM_VS_HF}'s run "
        f"({info['date']}, load {info['load_avg_1m']})")
    assert f"torch {info['torch']} ({info['torch_threads']} threads)" in head, head
    lm = lambda n, k: row_value(LM_VS_HF, ("rows",), {"name": n}, k)  # noqa: E731
    columns = {"ms/prompt (med)": "ms", "ms/prompt (min)": "ms_min", "tok/s": "tok_s",
               "HF / ours": "hf_over_ours", "≠ HF greedy": "mismatches"}
    rows = md_table(text, ["method", "ms/prompt (med)"])
    assert [r["method"] for r in rows] == [r["name"] for r in run["rows"]]
    for r in rows:
      for h, cell in r.items():
        if h != "method":
          checks.number(f"{name}: table, {r['method']}, {h}", cell, lm(r["method"], columns[h]))
    ratio = lambda n, *k: at(LM_VS_HF, "ratios", n, *k)  # noqa: E731
    columns = {"Σ ratio": ("ratio",), "95% low": ("interval", 0), "95% high": ("interval", 1),
               "per-prompt median": ("median",), "IQR low": ("iqr", 0), "IQR high": ("iqr", 1)}
    rows = md_table(text, ["ratio of times", "Σ ratio"])
    assert sorted(r["ratio of times"] for r in rows) == sorted(run["ratios"])
    for r in rows:
      for h, cell in r.items():
        if h != "ratio of times":
          checks.number(f"{name}: ratios, {r['ratio of times']}, {h}", cell,
                        ratio(r["ratio of times"], *columns[h]))
    spec = "ours speculative"
    same = next(n for n in run["ratios"] if n.startswith("HF assisted") and n.endswith(spec))
    checks.claim(name, text, "{v}M parameters); the drafter is its first layer with the same "
                 "embeddings and output head ({d}M)", v=at(LM_VS_HF, "pair", "verifier", "params_M"),
                 d=at(LM_VS_HF, "pair", "drafter", "params_M"))
    checks.claim(name, text, "every call writes exactly {n} tokens",
                 n=at(LM_VS_HF, "args", "max_new_tokens"))
    checks.claim(name, text, "{n} random prompts of", n=at(LM_VS_HF, "args", "examples"))
    checks.claim(name, text, "this verifier has {x}× the bundled one's parameters ({v}M against "
                 "{t}M)", x=at(LM_VS_HF, "pair", "verifier", "params_M")
                 / quality("demo-verifier", "params_M"),
                 v=at(LM_VS_HF, "pair", "verifier", "params_M"),
                 t=quality("demo-verifier", "params_M"))
    checks.claim(name, text, "Our greedy decoding is {x}× faster than HF's",
                 x=at(LM_VS_HF, "ratios", "HF greedy / ours verifier", "ratio"))
    checks.claim(name, text, "over verifier-only for us ({a}×, interval {lo}–{hi}) than for HF "
                 "({b}×)", a=at(LM_VS_HF, "ratios", "ours verifier / ours speculative", "ratio"),
                 lo=at(LM_VS_HF, "ratios", "ours verifier / ours speculative", "interval", 0),
                 hi=at(LM_VS_HF, "ratios", "ours verifier / ours speculative", "interval", 1),
                 b=V(lambda: next(v["ratio"] for k, v in run["ratios"].items()
                                  if k.startswith("HF greedy / HF assisted")),
                     f"{LM_VS_HF} ratios/HF greedy / HF assisted … /ratio"))
    checks.claim(name, text, "the drafter's token is accepted on {pct}% of drafted positions, "
                 "{k} tokens per verifier call", pct=at(LM_VS_HF, "acceptance") * 100,
                 k=at(LM_VS_HF, "tokens_per_verifier_call"))
    checks.claim(name, text, "our speculative decoding is **{x}×** faster than HF's assisted "
                 "generation (95% interval {lo}–{hi}; per prompt median {med}, IQR {q1}–{q3})",
                 x=ratio(same, "ratio"), lo=ratio(same, "interval", 0),
                 hi=ratio(same, "interval", 1), med=ratio(same, "median"),
                 q1=ratio(same, "iqr", 0), q3=ratio(same, "iqr", 1))
    b = run["args"]["batch"]
    checks.claim(name, text, f"At batch {b} our speculative decoding gives {{s}} tokens/s and "
                 "our verifier-only {v}, against {h} for HF greedy",
                 s=lm(f"{spec}, batch {b}", "tok_s"), v=lm(f"ours verifier, batch {b}", "tok_s"),
                 h=lm(f"HF greedy, batch {b}", "tok_s"))
    assert run["outputs_identical"], f"{LM_VS_HF}: the outputs differ"
    m = lambda *k: at(LM_VS_HF, "machine", *k)  # noqa: E731
    checks.claim(name, text, "load {a} at the start, {b} at the end",
                 a=m("load_avg_1m_start"), b=m("load_avg_1m"))
    checks.claim(name, text, "torch 2.13 CPU with {n} threads", n=m("torch_threads"))
    checks.claim(name, text, "The run took {m} min {s} s",
                 m=V(lambda: run["wall_s"] // 60, f"{LM_VS_HF} wall_s // 60"),
                 s=V(lambda: round(run["wall_s"]) % 60, f"{LM_VS_HF} wall_s % 60"))
    checks.claim(name, text, "here {a} s with 2 threads against {b} s with 1",
                 a=m("torch_threads_probe_s", "2"), b=m("torch_threads_probe_s", "1"))
    # The earlier run whose probe chose one torch thread.
    assert LM_VS_HF_TORCH1 in text and _load(LM_VS_HF_TORCH1)["machine"]["torch_threads"] == 1
    one = lambda *k: at(LM_VS_HF_TORCH1, *k)  # noqa: E731
    checks.claim(name, text, "found 2 threads at {a} s against {b} s",
                 a=one("machine", "torch_threads_probe_s", "2"),
                 b=one("machine", "torch_threads_probe_s", "1"))
    checks.claim(name, text, "then our speculative decoding was {x}× faster than HF's assisted "
                 "generation and our greedy {y}× faster than HF's",
                 x=one("ratios", same, "ratio"), y=one("ratios", "HF greedy / ours verifier", "ratio"))
    checks.claim(name, text, "({a} against {b} ms per prompt for speculative decoding)",
                 a=lm(spec, "ms"), b=row_value(LM_VS_HF_TORCH1, ("rows",), {"name": spec}, "ms"))
