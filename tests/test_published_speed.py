"""BENCHMARKS.md's main-job and CPU speed figures, against the results files
they cite (machinery and rules: tests/figures.py).
"""

from __future__ import annotations

import functools
import re
import statistics

import pytest

from figures import (Checks, DEMO_RESULTS, DEMO_SUMMARY, DEMO_V1_RESULTS, DEMO_V1_SUMMARY,
                     GAMMAS_TXT, LOOKUP_ESTIMATE, NUMBER, QUALITY_PAIR_V4, R, ROUND_PROFILE,
                     SPEED, SPEED_B8, SPEED_TXT, V, VS_HF,
                     VS_HF_G3, VS_HF_G3_RUN2, VS_HF_TXT, at, by_tokens, code_block,
                     demo_point, doc, fixed_tables, load_json, md_table, norm_label,
                     number, one_row, profile, profile_blocks, quality, range_of,
                     row_value, speed, summary, txt_cell, txt_number, txt_table, vs_hf)

def test_demo_sweep():
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Trade-off sweep")
    name = "BENCHMARKS.md (Trade-off sweep)"
    assert "docs/demo/summary.md" in text
    context = one_row(load_json(DEMO_RESULTS), DEMO_RESULTS, kind="sweep")["context"]
    assert f"{context['drafter']} → {context['verifier']}" in text, context
    checks.claim(name, text, "BLEU on {n} validation examples",
                 n=V(lambda: context["num_quality_examples"], f"{DEMO_RESULTS} sweep context"))
    checks.claim(name, text, "batch-1 latency on {n} (median of {r}",
                 n=V(lambda: context["num_latency_examples"], f"{DEMO_RESULTS} sweep context"),
                 r=V(lambda: context["repeats"], f"{DEMO_RESULTS} sweep context"))
    table0 = ("tables", 0)
    whole = lambda model: at(QUALITY_PAIR_V4, "splits", "validation", "models", model,  # noqa
                             "bleu")
    checks.claim(name, text, "the verifier scores {v} BLEU and the drafter {d} (on the whole "
                 "split: {qv} and {qd})", v=at(DEMO_SUMMARY, *table0, "verifier_quality"),
                 d=at(DEMO_SUMMARY, *table0, "drafter_quality"),
                 qv=whole(context["verifier"]), qd=whole(context["drafter"]))
    checks.claim(name, text, "copying the input scores {c}",
                 c=at(DEMO_SUMMARY, *table0, "copy_quality"))
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
    reached = {r["curve"] for r in load_json(DEMO_SUMMARY)["tables"][0]["rows"]
               if r["latency_at_verifier_quality"] is not None and r["method"] != "verifier"}
    assert shown == reached, (f"{name}: the table lists {sorted(shown)}; "
                              f"{DEMO_SUMMARY} reaches the verifier's BLEU with {sorted(reached)}")
    checks.claim(name, text, "drafter alone takes {d} of the verifier's time, {g}\nBLEU lower",
                 d=summary("Drafter", "best_relative_latency"),
                 g=V(lambda: (at(DEMO_SUMMARY, *table0, "verifier_quality").get()
                              - at(DEMO_SUMMARY, *table0, "drafter_quality").get()),
                     f"{DEMO_SUMMARY} verifier - drafter quality"))
    shown_at = lambda curve, key: summary(curve, "shown_" + key)  # noqa: E731
    v1 = "SpecCascade[token_v1]"
    checks.claim(name, text, "(token_v1 at α = {a}: {q} BLEU at {l}, {c} calls and {s} drafter "
                 "steps per token)", a=shown_at(v1, "alpha"), q=shown_at(v1, "quality"),
                 l=shown_at(v1, "relative_latency"), c=shown_at(v1, "verifier_calls_per_token"),
                 s=shown_at(v1, "drafter_steps_per_token"))
    checks.claim(name, text, "Lossless speculative decoding ({c} calls, {s} drafter steps per "
                 "token) is {x}× *slower*", x=summary("SpecDecode", "latency_at_verifier_quality"),
                 c=summary("SpecDecode", "matched_verifier_calls_per_token"),
                 s=summary("SpecDecode", "matched_drafter_steps_per_token"))


def test_first_pair_main_job_alpha_grid():
  """The speed section's paragraph on the first pair's main-job α grid (the
  run kept in benchmarks/results/demo_v1)."""
  with Checks() as checks:
    speed_sec = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    v1, S, P = "SpecCascade[token_v1]", DEMO_V1_SUMMARY, DEMO_V1_RESULTS
    alphas = lambda: sorted(p["alpha"] for p in load_json(S)["points"]  # noqa: E731
                            if p["curve"] == v1)
    alpha = lambda i: V(lambda: alphas()[i], f"{S} points: {v1} α[{i}]")  # noqa: E731
    largest = lambda metric=None: V(  # noqa: E731
        lambda: demo_point(v1, alphas()[-1], metric, path=P).get(),
        f"{P} [{v1}, largest α] " + (f"quality/{metric}" if metric else "relative_latency"))
    checks.claim("BENCHMARKS.md (speed)", speed_sec,
                 "α grid ({a}, {b}, {c}) puts the match at {m}: {q} BLEU against the "
                 "verifier's {qv}; α = {hi} is worse ({qhi}) at about the same latency ({lhi} "
                 "against {lm})",
                 a=alpha(0), b=alpha(1), c=alpha(2), hi=alpha(-1),
                 m=summary(v1, "matched_alpha", S), q=summary(v1, "matched_quality", S),
                 qv=at(S, "tables", 0, "verifier_quality"),
                 qhi=largest("bleu"), lhi=largest(),
                 lm=summary(v1, "latency_at_verifier_quality", S))


SPEED_COLUMNS = {"ms/ex (med)": "ms_per_example", "× (med)": "speedup_median",
                 "× (min)": "speedup_min", "tok/call": "tokens_per_call", "accept": "acceptance",
                 "≠verif": "mismatches", "compile s": "compile_s"}


def _speed_column(header: str) -> str:
  m = re.fullmatch(r"(tok/s|×) b(\d+)", header)
  if m:
    return ("tok_s_b" if m.group(1) == "tok/s" else "x_b") + m.group(2)
  return SPEED_COLUMNS[header]


# speed.py runs pasted into BENCHMARKS.md: results file -> the words that
# start its paragraphs (its pasted output among them) and those of the next run.
_FIRST_PAIR_SPEED = "2026-11-26 17:03, this project's CPU machine"
SPEED_RUNS = {SPEED: (_FIRST_PAIR_SPEED, None),
              R + "speed_v3.json": ("**The v3 pair**", _FIRST_PAIR_SPEED),
              R + "speed_v4.json": ("**The main job's pair now**", "**The v3 pair**")}


@pytest.mark.parametrize("path", sorted(SPEED_RUNS))
def test_speed_table(path):
  """The `speed.py` output pasted into BENCHMARKS.md is its results file's."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Bundled pair: CPU speed")
    start, end = SPEED_RUNS[path]
    text = text[text.index(start):text.index(end) if end else None]
    assert f"--json {path}" in text
    block = code_block(text, "## temperature 0")
    info = load_json(path)["machine"]
    head = block.splitlines()[0]
    assert head.startswith(f"# {info['date']}") and f"load {info['load_avg_1m']}" in head, (
        f"BENCHMARKS.md (speed): the pasted output's header {head!r} is not {path}'s run "
        f"({info['date']}, load {info['load_avg_1m']})")
    tables = fixed_tables(block)
    temp_of = lambda title: "T={:g}".format(  # noqa: E731
        float(re.search(r"temperature ([\d.]+)", title).group(1)))
    assert sorted(temp_of(t) for t, _, _ in tables) == sorted(load_json(path)["tables"])
    for title, header, rows in tables:
      temp = temp_of(title)
      assert [r[0] for r in rows] == [r["label"] for r in load_json(path)["tables"][temp]]
      for r in rows:
        for h, cell in zip(header[1:], r[1:]):
          checks.number(f"BENCHMARKS.md (speed output, {temp}), {r[0]}, {h}", cell,
                        speed(r[0], _speed_column(h), temp, path))


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
    b8_labels = [r["label"] for r in load_json(SPEED_B8)["tables"]["T=0"]]
    for row in md_table(text, ["method (greedy)", "batch 1 ×"]):
      label = by_tokens(b8_labels, row["method (greedy)"])
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
    checks.claim(name, text, "Its {main}× (the first pair's main job) to {sp}× (`speed.py`) per "
                 "example",
                 main=summary("SpecCascade[token_v1]", "speedup_at_verifier_quality",
                              DEMO_V1_SUMMARY),
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
      title = titles.get(label, norm_label(label))
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
    phase = lambda p: V(lambda: one_row(  # noqa: E731
        [b for b in profile_blocks() if "two inner while loops" in b["cmd"]], ROUND_PROFILE,
        title=lookup)["phases"][p], f"{ROUND_PROFILE} [{lookup}, two inner while loops] {p}")
    checks.claim(name, text, "plain steps {s} µs, the 8-token chunks {c} µs, the encoder {e} µs "
                 "({pct}%", s=phase("step/model"), c=phase("verify/model"), e=phase("encode/model"),
                 pct=new("encoders"))
    b8 = functools.partial(profile, cmd_has="--batch 8", info_has="batches of 8")
    checks.claim(name, text, "{n} loop iterations against verifier-only decoding's {m}",
                 n=b8(lookup, "rounds"), m=b8("verifier γ=7", "steps"))
    checks.claim(name, text, "a verifier-only step's {ms} ms",
                 ms=V(lambda: one_row(profile_blocks(), ROUND_PROFILE, title="verifier γ=7")[
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
        txt = load_json(VS_HF_TXT)
        ms = lambda name: float(re.search(re.escape(name) + r"\s+([\d.]+)", txt).group(1))  # noqa
        checks.number(f"{where}, afternoon", r["× verifier-only (afternoon)"], V(
            lambda: ms("ours verifier") / ms("ours prompt lookup γ=7 n=3"),
            f"{VS_HF_TXT} ours verifier / ours prompt lookup ms"))
        continue
      elif "main job" in r["where"]:
        checks.number(f"{where}, now", r["× now"],
                      summary("PromptLookup", "speedup_at_verifier_quality", DEMO_V1_SUMMARY))
        checks.number(f"{where}, examples", r["examples"], V(
            lambda: one_row(load_json(DEMO_V1_RESULTS), DEMO_V1_RESULTS, kind="sweep")[
                "context"]["num_latency_examples"], f"{DEMO_V1_RESULTS} num_latency_examples"))
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
      assert load_json(path)["args"]["gamma"] == int(gamma)
      assert load_json(path)["machine"]["date"][11:16] == hhmm, (
          f"{name}: the γ = {gamma} output is labelled {hhmm}; {path} is of "
          f"{load_json(path)['machine']['date']}")
      assert [r[0] for r in rows] == [r["name"] for r in load_json(path)["rows"]]
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



DEMO_AB = R + "demo_ab.json"


def _ab_claim(checks, name, text, lead, path):
  """'{lead} {k} of {n} points agree within 7%, …' against a compare_sweeps.py file."""
  devs = lambda: [abs(r["b_over_a"] - 1.0) for r in load_json(path)["rows"]]  # noqa: E731
  checks.claim(name, text, lead + " {k} of {n} points agree within 7%, the median "
               "disagreement is {med}%, the largest {top}%",
               k=V(lambda: sum(d <= 0.07 for d in devs()), f"{path} rows within 7%"),
               n=V(lambda: len(devs()), f"{path} rows"),
               med=V(lambda: 100 * statistics.median(devs()), f"{path} median |B/A − 1|"),
               top=V(lambda: 100 * load_json(path)["max_abs_deviation"],
                     f"{path} max_abs_deviation"))
  assert not load_json(path)["quality_differs"], f"{path}: the runs decoded different tokens"


def test_two_main_job_runs():
  """The issue-16 comparisons of main-job runs (benchmarks/compare_sweeps.py):
  the v3 pair; the first pair, and the third run (one collection
  per point) against the second."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Main job: do two fresh runs agree?")
    name = "BENCHMARKS.md (two main-job runs)"
    _ab_claim(checks, name, text, "On the v3 pair:", R + "demo_ab_v3.json")
    _ab_claim(checks, name, text, "at T = 0.", DEMO_AB)
    _ab_claim(checks, name, text, "against the second:", R + "demo_ab_pointgc.json")
    _ab_claim(checks, name, text, "Rotating copies:", R + "demo_ab_copies.json")
    path = R + "compile_copies.json"
    checks.claim(name, text, "The copies differ by {m}% (speculative) and {v}% (verifier)",
                 m=at(path, "method_copy_spread") * 100, v=at(path, "verifier_copy_spread") * 100)
    checks.claim(name, text, "rounds by up to {h}%", h=at(path, "half_spread_max") * 100)


LM_VS_HF, LM_VS_HF_TORCH1 = R + "lm_vs_hf.json", R + "lm_vs_hf_torch1.json"


def test_lm_vs_hf():
  """The decoder-only comparison with HF assisted generation (benchmarks/lm_vs_hf.py)."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Decoder-only LMs against Hugging Face")
    name = "BENCHMARKS.md (decoder-only LMs vs HF)"
    run = load_json(LM_VS_HF)
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
    assert LM_VS_HF_TORCH1 in text and load_json(LM_VS_HF_TORCH1)["machine"]["torch_threads"] == 1
    one = lambda *k: at(LM_VS_HF_TORCH1, *k)  # noqa: E731
    checks.claim(name, text, "found 2 threads at {a} s against {b} s",
                 a=one("machine", "torch_threads_probe_s", "2"),
                 b=one("machine", "torch_threads_probe_s", "1"))
    checks.claim(name, text, "then our speculative decoding was {x}× faster than HF's assisted "
                 "generation and our greedy {y}× faster than HF's",
                 x=one("ratios", same, "ratio"), y=one("ratios", "HF greedy / ours verifier", "ratio"))
    checks.claim(name, text, "({a} against {b} ms per prompt for speculative decoding)",
                 a=lm(spec, "ms"), b=row_value(LM_VS_HF_TORCH1, ("rows",), {"name": spec}, "ms"))


AB_LOOP_CORE = R + "ab_loop_core.json"


def test_loop_core_ab():
  """Issue 14's speed A/B of the loop core (benchmarks/ab_speed.py): the pasted
  table, the command and the prose ranges, against the results file."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## One loop core: speed A/B")
    name = "BENCHMARKS.md (loop-core A/B)"
    run = load_json(AB_LOOP_CORE)
    start = text.index("python benchmarks/ab_speed.py")
    quoted = " ".join(text[start:text.index("\n\n", start)].replace("\\\n", " ").split())
    assert quoted == run["command"], (
        f"{name}: the quoted command {quoted!r} is not the one of {AB_LOOP_CORE}: "
        f"{run['command']!r}")
    rows = {(r["method"], r["metric"]): r for r in run["rows"]}
    block = code_block(text, "new/old (med)")
    for line in block.splitlines():
      cells = line.split()
      if not cells or not cells[0].startswith("T="):
        continue
      metric = cells[-6]
      method = " ".join(cells[1:-6])
      r = rows.pop((method, metric))
      for printed, key in zip(cells[-5:], ("old", "new", "ratio_median", "ratio_min",
                                           "ratio_max")):
        checks.number(f"{name}: {method} {metric} {key}", printed,
                      V(lambda r=r, key=key: r[key], f"{AB_LOOP_CORE} {method} {metric}"))
    assert not rows, f"{name}: rows of {AB_LOOP_CORE} missing from the table: {sorted(rows)}"
    lat = [V(lambda r=r: r["ratio_median"], r["method"]) for r in run["rows"]
           if r["metric"] == "latency"]
    thr = [V(lambda r=r: r["ratio_median"], r["method"]) for r in run["rows"]
           if r["metric"] != "latency"]
    spec_thr = [V(lambda r=r, k=k: r[k], r["method"]) for r in run["rows"]
                if r["metric"] != "latency" and r["method"] not in ("verifier", "drafter")
                for k in ("ratio_min", "ratio_max")]
    checks.claim(name, text, "below 1\n({lo}–{hi})", lo=range_of(lat, min),
                 hi=range_of(lat, max))
    checks.claim(name, text, "above 1 ({lo}–{hi})", lo=range_of(thr, min),
                 hi=range_of(thr, max))
    checks.claim(name, text, "the noisiest, {lo}–{hi}", lo=range_of(spec_thr, min),
                 hi=range_of(spec_thr, max))


def test_latency_fit():
  """The main-job latency fit (Issue 17, "Where the main job's time goes")
  against latency_fit_v2.json."""
  path = R + "latency_fit_v2.json"
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## Issue 17")
    text = text[text.index("**Where the main job's time goes**"):]
    name = "BENCHMARKS.md (Issue 17, latency fit)"
    rows = md_table(text, ["point", "mean ms per example", "fixed ms"])
    assert len(rows) >= 4, f"{name}: the table is gone"
    labels = {"SpecDecode (γ = 5)": "SpecDecode",
              "SpecCascade[token_v1] α = 0.2": "SpecCascade[token_v1] α=0.2"}
    for row in rows:
      label = labels.get(row["point"], row["point"])
      rec = one_row(load_json(path)["rows"], path, point=label)
      for header, key in (("mean ms per example", "mean_ms"), ("fixed ms", "fixed_ms"),
                          ("ms per iteration", "per_iteration_ms"),
                          ("iterations", "mean_iterations"), ("R²", "r2")):
        checks.number(f"{name}: {label}, {header}", number(row[header]),
                      V(lambda rec=rec, key=key: rec[key], f"{path} {label} {key}"))


VS_HF_V4 = R + "vs_hf_v4.json"


def test_vs_hf_main_pair():
  """The main job's pair against transformers (vs_hf.py, --demo-pair v4)."""
  with Checks() as checks:
    text = doc("BENCHMARKS.md", "## The main job's pair against Hugging Face")
    name = "BENCHMARKS.md (main pair vs HF)"
    run = load_json(VS_HF_V4)
    assert f"--json {VS_HF_V4}" in text and run["args"]["demo_pair"] == "v4"
    block = code_block(text, "HF / ours")
    head = block.splitlines()[0]
    assert head.startswith(f"# {run['machine']['date']}") and (
        f"load {run['machine']['load_avg_1m']}" in head), (name, head)
    columns = {"ms/ex (med)": "ms", "ms/ex (min)": "ms_min", "tok/s": "tok_s",
               "HF / ours": "hf_over_ours", "≠ours-verifier": "mismatches"}
    (_, header, rows), = fixed_tables(block)
    assert [r[0] for r in rows] == [r["name"] for r in run["rows"]]
    for r in rows:
      for h, cell in zip(header[1:], r[1:]):
        checks.number(f"{name}: {r[0]}, {h}", cell, vs_hf(VS_HF_V4, r[0], columns[h]))
    assert all(r.get("mismatches", 0) == 0 for r in run["rows"]) and not run["errors"]
    hf = lambda n, k="ms": vs_hf(VS_HF_V4, n, k)  # noqa: E731
    checks.claim(name, text, "ours is {x}× faster than HF's assisted generation with a constant "
                 "γ = 3 ({d}× against HF's defaults); our greedy decoding is {g}× faster than "
                 "HF's and our prompt lookup {l}× faster", x=hf("HF assisted (γ=3 constant)",
                                                             "hf_over_ours"),
                 d=hf("HF assisted (defaults)", "hf_over_ours"),
                 g=hf("HF greedy", "hf_over_ours"), l=hf("HF prompt lookup γ=7 n≤3", "hf_over_ours"))
    checks.claim(name, text, "(both {v} ms per example), is {u}× faster than HF's assisted "
                 "generation with its defaults; HF's assisted generation is {s}× *slower* than "
                 "HF greedy", v=hf("ours verifier"),
                 u=hf("HF assisted (defaults)") / hf("ours verifier"),
                 s=hf("HF assisted (defaults)") / hf("HF greedy"))
    checks.claim(name, text, "batch 8 gives {b8} tokens/s against {b1} at batch 1",
                 b8=hf("ours speculative, batch 8", "tok_s"), b1=hf("ours speculative", "tok_s"))
