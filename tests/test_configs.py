"""Every gin file under configs/ parses, finalizes and selects a real job.

Nothing is run (train configs would train, sweeps would decode): a config
"builds" when gin accepts every binding against the real function signatures,
`main.run.fn` resolves to the expected function, and every %gin.REQUIRED
placeholder is listed in the file's header comment.
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
    "train/demo_drafter.gin": "train_gettext",
    "train/demo_verifier.gin": "train_gettext",
    "train/demo_verifier_stage1.gin": "train_gettext",
    "train/demo_drafter_v2.gin": "train_gettext",
    "train/demo_drafter_v2_seqkd.gin": "train_gettext",
    "train/demo_verifier_v2.gin": "train_gettext",
    "train/base.gin": "train_gettext",
}


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


def _parse(files, bindings=(), fill_required=True):
  """Parses and finalizes; REQUIRED placeholders left unbound get dummy values."""
  gin.clear_config()
  for path in (os.getcwd(), CONFIGS):
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings([os.path.join(CONFIGS, f) for f in files],
                                      list(bindings), finalize_config=False)
  if fill_required:
    for m in {m for f in files for m in _required(f)}:
      if repr(gin.query_parameter(f"{m}/macro.value")) == "%gin.REQUIRED":
        gin.bind_parameter(f"{m}/macro.value", "x")
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
  _parse(COMPANIONS.get(name, []) + [name])
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


@pytest.mark.parametrize("run", ["runs/sweep.gin", "runs/infer.gin", "runs/eval.gin"])
def test_run_files_fill_from_a_model_pair_file(run):
  _parse([run, "models/demo_pair.gin"],
         ["TASK = 'gettext_en_de_v2'", "OUTPUT_DIR = '/tmp/x'"])
  fn = gin.query_parameter("main.run.fn").configurable.wrapped.__name__
  assert gin.query_parameter(f"{fn}.drafter") is not None
  assert gin.query_parameter("DRAFTER/macro.value") == "demo-drafter-v4"
  assert gin.query_parameter("VERIFIER/macro.value") == "demo-verifier-v4"
  assert gin.query_parameter("VOCABULARY/macro.value") == "gettext_v2"


def test_demo_config_values():
  _parse(["demo.gin"])
  assert gin.query_parameter("TASK/macro.value") == "gettext_en_de_v2"
  assert gin.query_parameter("VOCABULARY/macro.value") == "gettext_v2"
  assert gin.query_parameter("GRID/macro.value") == "demo"
  assert gin.query_parameter("LENGTH_BUCKETS/macro.value") == (48,)
  # The demo is runs/sweep.gin + models/demo_pair.gin with other values: every
  # parameter the generic sweep binds, the demo binds too.
  demo_params = set(gin.get_bindings("spec_cascade_jax.evaluation.sweep.run_sweep"))
  _parse(["runs/sweep.gin", "models/demo_pair.gin"])
  assert set(gin.get_bindings("spec_cascade_jax.evaluation.sweep.run_sweep")) <= demo_params


@pytest.mark.slow
def test_t5_pair_reaches_the_size_check(tmp_path, tiny_t5_v32):
  """The pair file's DRAFTER is a checked load: a wrong-size checkpoint fails."""
  from spec_cascade_jax.models.checkpoint import save_model
  _, v = tiny_t5_v32
  save_model(v, str(tmp_path / "m"))
  _parse(["runs/infer.gin", "models/t5_small_large.gin"],
         [f"T5_SMALL_CHECKPOINT = '{tmp_path / 'm'}'", "T5_LARGE_CHECKPOINT = '/nope'"])
  load = gin.get_configurable("t5_small/spec_cascade_jax.evaluation.infer.load_checked_model")
  with pytest.raises(ValueError, match="is not a t5-small checkpoint"):
    load()


def test_required_placeholders_fail_at_parse_time():
  with pytest.raises(ValueError, match="OUTPUT_DIR.*REQUIRED"):
    _parse(["runs/sweep.gin", "models/demo_pair.gin"], ["TASK = 't'"],
           fill_required=False)


def test_unknown_parameter_is_rejected():
  with pytest.raises(ValueError):
    _parse(["demo.gin"], ["sweep.run_sweep.no_such_parameter = 1"])


def test_cli_rewrites_gin_flags():
  args = main.parse_args(["--gin_file=demo.gin", "--gin.NUM_QUALITY_EXAMPLES=10"])
  assert args.gin_bindings == ["NUM_QUALITY_EXAMPLES = 10"]


def _bench_common():
  import sys
  if os.path.join(ROOT, "benchmarks") not in sys.path:  # as tests/test_benchmarks.py
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  import common
  return common


def test_the_benchmarks_default_pair_is_the_main_jobs():
  """benchmarks/common.py's default --demo-pair names the pair, vocabulary and
  task that configs/demo.gin runs."""
  common = _bench_common()
  pair = common.DEMO_PAIRS[common.DEFAULT_DEMO_PAIR]
  _parse(["demo.gin"])
  assert pair.drafter == gin.query_parameter("DRAFTER/macro.value")
  assert pair.verifier == gin.query_parameter("VERIFIER/macro.value")
  assert pair.vocabulary == gin.query_parameter("VOCABULARY/macro.value")
  assert pair.corpus == gin.query_parameter("TASK/macro.value")


@pytest.mark.parametrize("model_file,role", [("models/demo_drafter_v4.gin", "drafter"),
                                             ("models/demo_verifier_v4.gin", "verifier")])
def test_benchmark_random_weights_have_the_bundled_shapes(model_file, role):
  """--random-weights draws weights of the bundled pair's shapes, which are
  its model gin files' configs."""
  common = _bench_common()
  models = common.demo_pair(random_weights=True)
  bundled = common.demo_pair()
  model = models[0 if role == "drafter" else 1]
  _parse([model_file])
  cfg = gin.query_parameter("MODEL_CONFIG/macro.value").scoped_configurable_fn()
  assert model.config == cfg
  assert models[2] == "random" and bundled[2] == "bundled"
  from spec_cascade_jax.training.distill import params_fingerprint
  assert (params_fingerprint(model.params)
          != params_fingerprint(bundled[0 if role == "drafter" else 1].params))


def test_a_gin_file_given_by_its_relative_path_is_found_without_an_error_log(
    monkeypatch, caplog):
  monkeypatch.chdir(ROOT)
  with caplog.at_level("ERROR"):
    main.configure(["configs/demo.gin"])
  assert gin.query_parameter("GRID/macro.value") == "demo"
  assert not [r for r in caplog.records if "Path not found" in r.getMessage()]


def _value(selector: str):
  """A bound parameter's value, a macro resolved; None where nothing is bound."""
  try:
    v = gin.query_parameter(selector)
  except ValueError:
    return None
  text = repr(v)
  return gin.query_parameter(f"{text[1:]}/macro.value") if text.startswith("%") else v


def test_the_two_drafter_distillation_arms_differ_only_in_the_distillation():
  """Issue 17's A/B: token-level KD against sequence-level KD, everything else equal."""
  arms = []
  for name in ("train/demo_drafter_v2.gin", "train/demo_drafter_v2_seqkd.gin"):
    _parse([name])
    recipe = {k: _value(f"recipes.train_gettext.{k}")
              for k in ("kd_from", "distill_from", "corpus", "vocabulary")}
    train = {k: _value(f"trainer.TrainConfig.{k}")
             for k in ("kd_weight", "optimizer", "learning_rate", "warmup_steps",
                       "tokens_per_batch", "max_len")}
    arms.append((recipe, train, _value("TRAIN_STEPS/macro.value"),
                 _value("WORKDIR/macro.value")))
  (tok_r, tok_t, tok_steps, tok_dir), (seq_r, seq_t, seq_steps, seq_dir) = arms
  assert tok_r["kd_from"] == seq_r["distill_from"] == "demo-verifier-v2"
  assert tok_r["distill_from"] is None and seq_r["kd_from"] is None
  assert tok_t.pop("kd_weight") == 0.8 and seq_t.pop("kd_weight") == 0.0
  assert tok_t == seq_t and tok_steps == seq_steps and tok_dir != seq_dir
  assert tok_t["optimizer"] == "adafactor"
  assert (tok_r["corpus"], tok_r["vocabulary"]) == (seq_r["corpus"], seq_r["vocabulary"])
