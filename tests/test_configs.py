"""Every gin file under configs/ parses, finalizes and selects a real job, and
no default names a model, vocabulary or corpus that is not bundled.

Nothing is run (train configs would train, sweeps would decode): a config
"builds" when gin accepts every binding against the real function signatures,
`main.run.fn` resolves to the expected function, and every %gin.REQUIRED
placeholder is listed in the file's header comment. %gin.REQUIRED values get
a stand-in (`STAND_IN`), the way a user's checkpoint paths fill them.
"""

from __future__ import annotations

import glob
import os
import re

import gin
import pytest

from spec_cascade_jax import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")

# Fragments that only make sense after another file: (files parsed first).
COMPANIONS = {
    "train/base.gin": ["models/demo_drafter.gin"],
}
RUN_FN = {
    "demo.gin": "run_sweep",
    "runs/sweep.gin": "run_sweep",
    "runs/infer.gin": "infer",
    "runs/eval.gin": "evaluate",
    "runs/calibrate.gin": "run_calibration",
    "train/demo_drafter.gin": "train_gettext",
    "train/demo_verifier.gin": "train_gettext",
    "train/base.gin": "train_gettext",
}
RUN_FILES = ("runs/sweep.gin", "runs/infer.gin", "runs/eval.gin", "runs/calibrate.gin")
# What fills a %gin.REQUIRED value in these tests (a user's checkpoint path).
STAND_IN = "/stand-in/path"


def all_configs() -> list[str]:
  return sorted(os.path.relpath(p, CONFIGS)
                for p in glob.glob(os.path.join(CONFIGS, "**", "*.gin"), recursive=True))


def _required(name: str) -> list[str]:
  """%gin.REQUIRED macros of a file and the files it includes."""
  with open(os.path.join(CONFIGS, name), encoding="utf-8") as f:
    text = f.read()
  out = re.findall(r"^(\w+)\s*=\s*%gin\.REQUIRED", text, re.M)
  for inc in re.findall(r"^include\s+'([^']+)'", text, re.M):
    out += _required(inc)
  return out


def parse_config(files, bindings=(), fill_required=True):
  """Parses and finalizes; REQUIRED placeholders left unbound get `STAND_IN`."""
  gin.clear_config()
  for path in (os.getcwd(), CONFIGS):
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings([os.path.join(CONFIGS, f) for f in files],
                                      list(bindings), finalize_config=False)
  if fill_required:
    for m in {m for f in files for m in _required(f)}:
      if repr(gin.query_parameter(f"{m}/macro.value")) == "%gin.REQUIRED":
        gin.bind_parameter(f"{m}/macro.value", STAND_IN)
  gin.finalize()


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  gin.clear_config()


def test_the_expected_configs_exist():
  names = set(all_configs())
  for f in ["demo.gin", "runs/sweep.gin", "runs/infer.gin", "runs/eval.gin",
            "models/demo_pair.gin", "models/t5_small.gin", "models/t5_large.gin",
            "models/t5_small_large.gin", "models/t5_1_1_small.gin"]:
    assert f in names, f


@pytest.mark.parametrize("name", all_configs())
def test_config_parses_and_builds(name):
  parse_config(COMPANIONS.get(name, []) + [name])
  if name in RUN_FN:
    ref = gin.query_parameter("main.run.fn")
    fn = ref.configurable.wrapped
    assert callable(fn) and fn.__name__ == RUN_FN[name]
  # Every REQUIRED placeholder is documented in the header comment.
  with open(os.path.join(CONFIGS, name), encoding="utf-8") as f:
    text = f.read()
  header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
  for macro in re.findall(r"^(\w+)\s*=\s*%gin\.REQUIRED", text, re.M):
    assert macro in header, f"{name}: {macro} is %gin.REQUIRED but not in the header"


@pytest.mark.parametrize("run", RUN_FILES)
def test_run_files_fill_from_a_model_pair_file(run):
  parse_config([run, "models/demo_pair.gin"],
         ["TASK = 'gettext_en_de'", "OUTPUT_DIR = '/tmp/x'"])
  fn = gin.query_parameter("main.run.fn").configurable.wrapped.__name__
  assert gin.query_parameter(f"{fn}.drafter") is not None
  assert gin.query_parameter("DRAFTER/macro.value") == "demo-drafter"
  assert gin.query_parameter("VERIFIER/macro.value") == "demo-verifier"
  assert gin.query_parameter("VOCABULARY/macro.value") == "gettext"


def test_demo_config_values():
  parse_config(["demo.gin"])
  assert gin.query_parameter("TASK/macro.value") == "gettext_en_de"
  assert gin.query_parameter("VOCABULARY/macro.value") == "gettext"
  assert gin.query_parameter("GRID/macro.value") == "demo"
  assert gin.query_parameter("LENGTH_BUCKETS/macro.value") == (48,)
  # The demo is runs/sweep.gin + models/demo_pair.gin with other values: every
  # parameter the generic sweep binds, the demo binds too.
  demo_params = set(gin.get_bindings("spec_cascade_jax.evaluation.sweep.run_sweep"))
  parse_config(["runs/sweep.gin", "models/demo_pair.gin"])
  assert set(gin.get_bindings("spec_cascade_jax.evaluation.sweep.run_sweep")) <= demo_params


@pytest.mark.slow
def test_t5_pair_reaches_the_size_check(tmp_path, tiny_t5_v32):
  """The pair file's DRAFTER is a checked load: a wrong-size checkpoint fails."""
  from spec_cascade_jax.models.checkpoint import save_model
  _, v = tiny_t5_v32
  save_model(v, str(tmp_path / "m"))
  parse_config(["runs/infer.gin", "models/t5_small_large.gin"],
         [f"T5_SMALL_CHECKPOINT = '{tmp_path / 'm'}'", "T5_LARGE_CHECKPOINT = '/nope'"])
  load = gin.get_configurable("t5_small/spec_cascade_jax.evaluation.infer.load_checked_model")
  with pytest.raises(ValueError, match="is not a t5-small checkpoint"):
    load()


def test_required_placeholders_fail_at_parse_time():
  with pytest.raises(ValueError, match="OUTPUT_DIR.*REQUIRED"):
    parse_config(["runs/sweep.gin", "models/demo_pair.gin"], ["TASK = 't'"],
           fill_required=False)


def test_unknown_parameter_is_rejected():
  with pytest.raises(ValueError):
    parse_config(["demo.gin"], ["sweep.run_sweep.no_such_parameter = 1"])


def test_cli_rewrites_gin_flags():
  args = main.parse_args(["--gin_file=demo.gin", "--gin.NUM_QUALITY_EXAMPLES=10"])
  assert args.gin_bindings == ["NUM_QUALITY_EXAMPLES = 10"]


def test_a_gin_file_given_by_its_relative_path_is_found_without_an_error_log(
    monkeypatch, caplog):
  monkeypatch.chdir(ROOT)
  with caplog.at_level("ERROR"):
    main.configure(["configs/demo.gin"])
  assert gin.query_parameter("GRID/macro.value") == "demo"
  assert not [r for r in caplog.records if "Path not found" in r.getMessage()]


def _bindings():
  """(key, name, value) of every string binding gin holds: key is the
  parameter or macro name, name the whole selector; macros resolved."""
  out = []
  for (scope, selector), params in gin.config._CONFIG.items():  # pylint: disable=protected-access
    for param, value in params.items():
      value = _resolve(value)
      if not isinstance(value, str):
        continue
      if selector == "gin.macro":   # a macro: its scope is its name
        out.append((scope, scope, value))
      else:
        out.append((param, f"{scope + '/' if scope else ''}{selector}.{param}", value))
  return out


def _resolve(value):
  """A macro reference's value (followed through macros), else `value`."""
  for _ in range(10):
    text = repr(value)
    if not (text.startswith("%") and "gin." not in text):
      return value
    value = gin.query_parameter(f"{text[1:]}/macro.value")
  return value


# The parameters and macros that name a model, a vocabulary or a corpus.
MODEL_KEYS = {"drafter", "verifier", "path_or_name", "kd_from", "distill_from", "model",
              "DRAFTER", "VERIFIER", "TEACHER"}
VOCABULARY_KEYS = {"vocabulary", "VOCABULARY"}
CORPUS_KEYS = {"corpus", "task", "TASK"}


def _check_names_are_bundled(where: str, bindings) -> int:
  from spec_cascade_jax.data import dataset, vocab
  from spec_cascade_jax.evaluation import prompts
  from spec_cascade_jax.models import loading
  from spec_cascade_jax.training import lineage
  bundled_models = set(loading.bundled_models())
  checked = 0
  for key, name, value in bindings:
    if value == STAND_IN or value.startswith(lineage.GIT_PREFIX):
      continue
    if key in MODEL_KEYS:
      assert value in bundled_models, f"{where}: {name} = {value!r} is not a bundled model"
    elif key in VOCABULARY_KEYS:
      assert value in vocab.BUNDLED, f"{where}: {name} = {value!r} is not a bundled vocabulary"
    elif key in CORPUS_KEYS:
      bundled = value in dataset.CORPORA or prompts.num_shots(value) is not None
      assert bundled, f"{where}: {name} = {value!r} is not a bundled corpus"
    else:
      continue
    checked += 1
  return checked


CONFIG_SETS = ([COMPANIONS.get(n, []) + [n] for n in all_configs()]
               + [[run, pair] for run in RUN_FILES
                  for pair in ("models/demo_pair.gin", "models/pair.gin")])


@pytest.mark.parametrize("files", CONFIG_SETS, ids=lambda f: "+".join(f))
def test_no_default_names_a_model_or_vocabulary_that_is_not_bundled(files):
  """Every gin file (a run file also with a pair file), with stand-ins for
  its %gin.REQUIRED checkpoint paths: each model, vocabulary and corpus its
  bindings name is bundled (or a stand-in, or a model of git history)."""
  parse_config(files, ["TASK = 'gettext_en_de'", f"OUTPUT_DIR = '{STAND_IN}'"]
               if files[0] in RUN_FILES else ())
  _check_names_are_bundled("+".join(files), _bindings())


def test_python_defaults_name_the_bundled_pair():
  """The library's own defaults (what a gin file does not bind) name the
  bundled pair, its vocabulary and its corpus."""
  import inspect
  from spec_cascade_jax.evaluation import infer, sweep
  from spec_cascade_jax.training import recipes
  defaults = []
  for fn in (sweep.run_sweep, infer.infer, infer.evaluate, infer.load_task,
             recipes.train_gettext):
    for name, p in inspect.signature(fn).parameters.items():
      if isinstance(p.default, str):
        defaults.append((name, f"{fn.__name__}.{name}", p.default))
  assert _check_names_are_bundled("python defaults", defaults) >= 8


def test_the_check_catches_an_unbundled_default():
  parse_config(["runs/sweep.gin", "models/demo_pair.gin"],
               ["TASK = 'gettext_en_de'", "OUTPUT_DIR = 'x'", "VERIFIER = 'demo-verifier-v4'"])
  with pytest.raises(AssertionError, match="demo-verifier-v4"):
    _check_names_are_bundled("sweep", _bindings())
  parse_config(["runs/sweep.gin", "models/demo_pair.gin"],
               ["TASK = 'gettext_en_de'", "OUTPUT_DIR = 'x'", "VOCABULARY = 'demo'"])
  with pytest.raises(AssertionError, match="'demo' is not a bundled vocabulary"):
    _check_names_are_bundled("sweep", _bindings())


def _save(model, path, vocab=None):
  from spec_cascade_jax.models.checkpoint import save_model
  save_model(model, str(path), vocabulary=vocab)
  return str(path)


def test_pair_file_loads_any_two_checkpoints_and_widens_the_drafter(tmp_path, tiny_t5_v32):
  """configs/models/pair.gin: two checkpoints of any sizes, no preset check;
  DRAFTER_VOCAB_SIZE widens the drafter's output to the verifier's."""
  d, v = tiny_t5_v32
  parse_config(["runs/infer.gin", "models/pair.gin"],
               [f"DRAFTER_CHECKPOINT = '{_save(d, tmp_path / 'd')}'",
                f"VERIFIER_CHECKPOINT = '{_save(v, tmp_path / 'v')}'",
                "DRAFTER_VOCAB_SIZE = 40", "TASK = 'gettext_en_de'", "OUTPUT_DIR = 'x'"])
  drafter = gin.query_parameter("DRAFTER/macro.value").scoped_configurable_fn()
  verifier = gin.query_parameter("VERIFIER/macro.value").scoped_configurable_fn()
  assert drafter.vocab_size == 40 and verifier.vocab_size == 32
  assert drafter.model.config.num_layers != verifier.config.num_layers
  assert _resolve(gin.query_parameter("VOCABULARY/macro.value")) == str(tmp_path / "v")


@pytest.mark.slow
def test_the_sweep_runs_from_the_pair_file(tmp_path, monkeypatch):
  """A user's own pair (here two small models of other sizes than the bundled
  ones, saved with the gettext vocabulary) runs the main job's sweep from
  one pair file; the wrong vocabulary stops it before any decoding."""
  import jax
  from spec_cascade_jax import main
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.testing import tiny_t5_pair
  d, v = tiny_t5_pair(jax.random.PRNGKey(0), vocab_size=8000, verifier_layers=2)
  vocab = load_vocabulary("gettext")
  args = [f"--gin.DRAFTER_CHECKPOINT='{_save(d, tmp_path / 'd', vocab)}'",
          f"--gin.VERIFIER_CHECKPOINT='{_save(v, tmp_path / 'v', vocab)}'",
          "--gin.VOCABULARY='gettext'", "--gin.TASK='gettext_en_de'",
          "--gin.GRID='small'", "--gin.NUM_QUALITY_EXAMPLES=4",
          "--gin.NUM_LATENCY_EXAMPLES=1", "--gin.REPEATS=1", "--gin.MAX_NEW_TOKENS=8",
          "--gin.MAX_INPUT_LENGTH=32", "--gin.LENGTH_BUCKETS=(32,)",
          "--gin_bindings=sweep.run_sweep.make_plots = False"]
  files = ["--gin_file=configs/runs/sweep.gin", "--gin_file=configs/models/pair.gin"]
  monkeypatch.chdir(ROOT)
  main.main(files + args + [f"--gin.OUTPUT_DIR='{tmp_path / 'out'}'"])
  with open(tmp_path / "out" / "summary.json") as f:
    assert "Verifier" in f.read()
  wrong = tmp_path / "other.model"
  from spec_cascade_jax.data.vocab import train_vocabulary
  from spec_cascade_jax.data.dataset import load_split
  rows = load_split("validation", "gettext_en_de")[:2000]
  train_vocabulary([r["en"] for r in rows] + [r["de"] for r in rows], str(wrong),
                   vocab_size=1000)
  with pytest.raises(SystemExit) as e:
    main.main(files + args + [f"--gin.VOCABULARY='{wrong}'",
                              f"--gin.OUTPUT_DIR='{tmp_path / 'out2'}'"])
  assert e.value.code == 2
  assert not os.path.exists(tmp_path / "out2" / "results.jsonl") or "point" not in open(
      tmp_path / "out2" / "results.jsonl").read()
