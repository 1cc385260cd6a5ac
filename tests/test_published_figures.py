"""README.md and the bundled data and pair's figures in BENCHMARKS.md,
against the files they cite (machinery and rules: tests/figures.py).
"""

from __future__ import annotations

import re

from figures import (CORPUS, CORPUS_V2, Checks, DEMO_RESULTS, DEMO_SUMMARY,
                     DRAFTER_RECIPE, GPU, MODELS, QUALITY, QUALITY_PAIR_V3, QUALITY_PAIR_V4, R,
                     STEP_COST, V, VERIFIER_RECIPE, at, doc, load_json, md_table, number, one_row, quality,
                     txt_number)

# ---------------------------------------------------------------------------
# README.md

def test_readme():
  with Checks() as checks:
    main_job = doc("README.md", "## Two commands")
    checks.claim("README.md", main_job, "against the bundled verifier's {v}",
                 v=at(DEMO_SUMMARY, "tables", 0, "verifier_quality"))
    copy = [r for r in load_json(DEMO_RESULTS) if r.get("kind") == "copy_baseline"]
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
  readme = load_json("README.md")
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
  curves = {r["curve"] for r in load_json(DEMO_SUMMARY)["tables"][0]["rows"]}
  assert curves == {c.name for c in grids.DEMO}, (curves, {c.name for c in grids.DEMO})


def test_readme_points_to_the_gpu_results():
  """README must not say that no GPU numbers exist while BENCHMARKS.md has them."""
  sharded = doc("README.md", "### Sharded and multi-host")
  machine = load_json(GPU)["machine"]
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
      manifest = CORPUS_V2 if row["corpus"].startswith("gettext_en_de") else CORPUS
      split = "test" if row["split"].startswith("test") else "validation"
      checks.number(f"{name}: copy baseline, {row['corpus']} {split}, examples", row["examples"],
                    at(manifest, "splits", split, "count"))


def test_v2_optimizer_ab():
  """Issue 17's optimizer comparison (the two runs' training losses)."""
  path = "benchmarks/results/v2_optimizer_ab.json"

  def loss(opt, step):
    return V(lambda: dict(load_json(path)[opt]["train_loss"])[step], f"{path} {opt} {step}")

  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Issue 17")
    name = "BENCHMARKS.md (Issue 17, optimizer)"
    checks.claim(name, text, "training loss of {a} at step 400, against AdamW's {w} at step\n400",
                 a=loss("adafactor", 400), w=loss("adamw", 400))
    checks.claim(name, text, "and {w} at step 500", w=loss("adamw", 500))
    ev = lambda step, k: V(  # noqa: E731
        lambda: next(e for e in load_json(path)["adafactor"]["eval"] if e["step"] == step)[k],
        f"{path} adafactor eval {step} {k}")
    checks.claim(name, text, "validation loss of {l} and BLEU {b}\non the recipe's 200",
                 l=ev(800, "valid_loss"), b=ev(800, "valid_bleu"))
    checks.claim(name, text, "validation loss {l} and BLEU {b} on those 200",
                 l=ev(1600, "valid_loss"), b=ev(1600, "valid_bleu"))
    checks.claim(name, text, "at step 2,400\nvalidation loss {l} and BLEU {b}",
                 l=ev(2400, "valid_loss"), b=ev(2400, "valid_bleu"))
    checks.claim(name, text, "({d3} at step 300,\n{d4} at step 400)",
                 d3=loss("adamw", 300) - loss("adafactor", 300),
                 d4=loss("adamw", 400) - loss("adafactor", 400))


def test_v2_verifier_short_schedule():
  """The 1,100-step v2 verifier run that missed (verifier_v2_1100.json)."""
  path = "benchmarks/results/verifier_v2_1100.json"
  run = lambda *keys: at(path, *keys)  # noqa: E731
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Issue 17")
    name = "BENCHMARKS.md (Issue 17, 1,100-step verifier)"
    checks.claim(name, text, "It ended at validation loss {l} and BLEU {b}\non the recipe's 200 "
                 "validation examples ({s} with the weights stored in",
                 l=run("final_eval", "valid_loss"), b=run("final_eval", "valid_bleu"),
                 s=run("final_eval_stored", "valid_bleu"))
    checks.claim(name, text, "{t} s of\nboth cores", t=run("wall_time_s"))
  assert at(path, "phases", -1, "num_steps").get() == 1100


def test_v2_verifier_bundled():
  """demo-verifier-v2's whole-split table and training run (BENCHMARKS.md,
  issue 17) against quality_verifier_v2.json and its recipe.json."""
  path = "benchmarks/results/quality_verifier_v2.json"
  recipe = "spec_cascade_jax/assets/models/demo-verifier-v2/recipe.json"
  name = "BENCHMARKS.md (Issue 17, demo-verifier-v2)"
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Issue 17")
    for split, label in [("validation", "validation"), ("test", "test (unseen packages)")]:
      scores = lambda key: at(path, "splits", split, "models", "demo-verifier-v2", key)  # noqa: E731,B023
      checks.claim(name, text, f"| {label} | {{n}} | {{b}} | {{c}} | {{chrf}} | {{eos}}% | {{ph}}% |",
                   n=at(path, "splits", split, "examples"), b=scores("bleu"),
                   c=at(path, "splits", split, "copy_bleu"), chrf=scores("chrf"),
                   eos=scores("no_eos_rate") * 100, ph=scores("placeholders_kept") * 100)
    checks.claim(name, text, "It trained for {t} s on both cores", t=at(recipe, "wall_time_s"))
    checks.claim(name, text, "| BLEU | {a} | {b} | {c} | {d} | {e} |",
                 **{k: at(recipe, "history", "eval", i, "valid_bleu")
                    for i, k in enumerate("abcde")})
    checks.claim(name, text, "weights stored in bfloat16: BLEU\n{s} on those 200",
                 s=at(recipe, "final_eval_stored", "valid_bleu"))


def _trained_model_and_pair_table(name, text, recipe, path=None, models=()):
  """A bundled model's paragraph: its training time, the per-evaluation loss
  and BLEU table and stored BLEU (recipe.json), and (with `path`) the
  whole-split table of `models` (drafter, verifier) with the drafter's
  agreement."""
  evals = "abcd"[:len(load_json(recipe)["history"]["eval"])]
  with Checks() as checks:
    checks.claim(name, text, "- {t} s on both cores", t=at(recipe, "wall_time_s"))
    history = lambda i, key: at(recipe, "history", "eval", i, key)  # noqa: E731
    for label, key in [("validation loss", "valid_loss"), ("BLEU", "valid_bleu")]:
      checks.claim(name, text, f"| {label} | " + " | ".join("{%s}" % k for k in evals) + " |",
                   **{k: history(i, key) for i, k in enumerate(evals)})
    checks.claim(name, text, "Stored in bfloat16: BLEU {s}.",
                 s=at(recipe, "final_eval_stored", "valid_bleu"))
    if path is None:
      return
    for split, label in [("validation", "validation ({n})"),
                         ("test", "test ({n}, unseen packages)")]:
      for model in models:
        scores = lambda key: at(path, "splits", split, "models", model, key)  # noqa: E731,B023
        checks.claim(name, text, f"| {label} | {model} | {{b}} | {{c}} | {{chrf}} | {{eos}}% "
                     "| {ph}% |", n=at(path, "splits", split, "examples"), b=scores("bleu"),
                     c=at(path, "splits", split, "copy_bleu"), chrf=scores("chrf"),
                     eos=scores("no_eos_rate") * 100, ph=scores("placeholders_kept") * 100)
      checks.claim(name, text, f"{{a}}% on {split}",
                   a=at(path, "splits", split, "agreement") * 100)


def test_v3_verifier_bundled():
  """demo-verifier-v3's training run and whole-split table with the v2 drafter
  (BENCHMARKS.md, issue 17) against its recipe.json and
  quality_v3_with_drafter_v2.json."""
  text = doc("BENCHMARKS.md", "## Issue 17")
  text = text[text.index("**demo-verifier-v3: bundled**"):
              text.index("**demo-drafter-v3: bundled**")]
  _trained_model_and_pair_table(
      "BENCHMARKS.md (Issue 17, demo-verifier-v3)", text,
      MODELS + "demo-verifier-v3/recipe.json", R + "quality_v3_with_drafter_v2.json",
      ("demo-drafter-v2", "demo-verifier-v3"))


def test_v3_drafter_bundled():
  """demo-drafter-v3's training run and the main job's pair on the whole
  splits (BENCHMARKS.md, issue 17) against its recipe.json and
  quality_pair_v3.json."""
  text = doc("BENCHMARKS.md", "## Issue 17")
  text = text[text.index("**demo-drafter-v3: bundled**"):
              text.index("**demo-verifier: bundled**")]
  _trained_model_and_pair_table(
      "BENCHMARKS.md (Issue 17, demo-drafter-v3)", text,
      MODELS + "demo-drafter-v3/recipe.json", QUALITY_PAIR_V3,
      ("demo-drafter-v3", "demo-verifier-v3"))


def test_v4_verifier_bundled():
  """demo-verifier's training run (its whole-split figures are in the v4
  drafter's table) against its recipe.json, and the placeholder counts its
  paragraph compares."""
  text = doc("BENCHMARKS.md", "## Issue 17")
  text = text[text.index("**demo-verifier: bundled**"):
              text.index("**demo-drafter: bundled**")]
  name = "BENCHMARKS.md (Issue 17, demo-verifier)"
  _trained_model_and_pair_table(name, text, MODELS + "demo-verifier/recipe.json")
  extra = lambda path, model: at(path, "splits", "validation", "models", model,  # noqa: E731
                                 "placeholder_mismatches", "extra", "%s")
  missing = lambda path, model: at(path, "splits", "validation", "models", model,  # noqa: E731
                                   "placeholder_mismatches", "missing", "%s")
  with Checks() as checks:
    checks.claim(name, text, "Added `%s` fell from {a} to {b} on\nvalidation, dropped `%s` "
                 "from {c} to {d}.", a=extra(QUALITY_PAIR_V3, "demo-verifier-v3"),
                 b=extra(QUALITY_PAIR_V4, "demo-verifier"),
                 c=missing(QUALITY_PAIR_V3, "demo-verifier-v3"),
                 d=missing(QUALITY_PAIR_V4, "demo-verifier"))


def test_v4_drafter_bundled():
  """demo-drafter's training run and the main job's pair on the whole
  splits (BENCHMARKS.md, issue 17) against its recipe.json and
  quality_pair_v4.json."""
  text = doc("BENCHMARKS.md", "## Issue 17")
  text = text[text.index("**demo-drafter: bundled**"):]
  _trained_model_and_pair_table(
      "BENCHMARKS.md (Issue 17, demo-drafter)", text,
      MODELS + "demo-drafter/recipe.json", QUALITY_PAIR_V4,
      ("demo-drafter", "demo-verifier"))


def test_train_step_dtypes():
  """The CPU training step, float32 against bfloat16 activations (train_step.py)."""
  path = "benchmarks/results/train_step_v2.json"
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Issue 17")
    name = "BENCHMARKS.md (Issue 17, training step dtypes)"
    run = load_json(path)
    block = [b for b in re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
             if "bfloat16 / float32 per round" in b]
    assert len(block) == 1, f"{name}: the pasted train_step.py output is gone"
    head = block[0].splitlines()[0]
    assert head.startswith(f"# {run['machine']['date']}"), (name, head)
    for line in block[0].splitlines():
      cells = line.split()
      if len(cells) == 4 and cells[0] in ("float32", "bfloat16"):
        row = one_row(run["rows"], path, dtype=cells[0])
        for printed, key in zip(cells[1:], ("s_per_step", "s_min", "s_max")):
          checks.number(f"{name}: {cells[0]} {key}", printed,
                        V(lambda row=row, key=key: row[key], f"{path} {cells[0]} {key}"))
    checks.claim(name, text, "median {m} (range {lo}-{hi})", m=at(path, "ratio_median"),
                 lo=at(path, "ratio_min"), hi=at(path, "ratio_max"))
    checks.claim(name, text, "(median ratio {m}, every", m=at(path, "ratio_median"))
    checks.claim(name, text, "are {pct}% slower per step",
                 pct=(at(path, "ratio_median") - 1) * 100)
    assert run["ratio_min"] > 1, f"{name}: 'every round slower' no longer holds"


def test_bundled_pair_quality():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: quality")
    name = "BENCHMARKS.md (Bundled pair: quality)"
    columns = {"d_model": "d_model", "params": "params_M", "on disk": "disk_MiB",
               "validation BLEU": "validation_bleu", "validation chrF": "validation_chrf",
               "test BLEU": "test_bleu", "test chrF": "test_chrf"}
    for row in md_table(text, ["model", "layers", "d_model"]):
      assert row["layers"] == one_row(load_json(QUALITY)["rows"], QUALITY, model=row["model"])["layers"]
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
