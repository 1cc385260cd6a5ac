"""The command line catches mistakes before any work starts.

Every failing case stops in argument / gin parsing: no model is loaded and
nothing is compiled (main.configure never calls the job). Only the exit-code
and --help cases start a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys

import gin
import pytest

from spec_cascade_jax import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


@pytest.fixture(autouse=True)
def _clean_gin(monkeypatch):
  monkeypatch.chdir(ROOT)
  gin.clear_config()
  yield
  gin.clear_config()


def _configure(argv):
  """main's parsing of a command line, without running the job."""
  args = main.parse_args(argv)
  main.configure(args.gin_file, args.gin_bindings,
                 [p for p in args.gin_search_paths.split(",") if p])


def _cli(*argv):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(
      os.pathsep) if p])
  return subprocess.run([sys.executable, "-m", "spec_cascade_jax.main", *argv], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ gin files


def test_missing_gin_file_is_one_line_and_exit_code_2():
  res = _cli("--gin_file=configs/nonexistent.gin")
  assert res.returncode == 2, res.stderr
  lines = [line for line in res.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, res.stderr
  assert "gin file 'configs/nonexistent.gin' not found" in lines[0]
  assert CONFIGS in lines[0] and "Traceback" not in res.stderr


def test_missing_gin_file_names_every_search_path(tmp_path):
  with pytest.raises(main.ConfigError) as e:
    _configure(["--gin_file=nope.gin", f"--gin_search_paths={tmp_path}"])
  msg = str(e.value)
  assert "gin file 'nope.gin' not found" in msg and "\n" not in msg
  for d in (ROOT, str(tmp_path), CONFIGS):
    assert d in msg


def test_misspelt_gin_file_gets_the_close_bundled_name():
  with pytest.raises(main.ConfigError, match=r"Did you mean configs/demo\.gin\?"):
    _configure(["--gin_file=configs/dmeo.gin"])


def test_missing_include_names_the_file_and_the_including_file(tmp_path):
  f = tmp_path / "run.gin"
  f.write_text("# x\ninclude 'models/no_such_pair.gin'\n")
  with pytest.raises(main.ConfigError) as e:
    _configure([f"--gin_file={f}"])
  msg = str(e.value)
  assert "'models/no_such_pair.gin'" in msg and f"{f}, line 2" in msg
  assert CONFIGS in msg and "\n" not in msg


def test_a_file_is_found_under_the_project_root_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _configure(["--gin_file=configs/demo.gin"])
  assert gin.query_parameter("GRID/macro.value") == "demo"


def test_no_gin_file():
  with pytest.raises(main.ConfigError, match="no --gin_file given"):
    _configure([])


# ------------------------------------------------------------------ bindings


def test_misspelt_macro_override_is_rejected_with_close_names():
  """Before: --gin.GRIDD was accepted and the run resumed old results."""
  with pytest.raises(main.ConfigError) as e:
    _configure(["--gin_file=configs/demo.gin", "--gin.GRIDD='demo'"])
  msg = str(e.value)
  assert "no gin file given defines or uses a macro GRIDD" in msg
  assert msg.endswith("Did you mean GRID?"), msg
  with pytest.raises(main.ConfigError, match="Did you mean NUM_QUALITY_EXAMPLES or "
                                             "NUM_LATENCY_EXAMPLES"):
    _configure(["--gin_file=configs/demo.gin", "--gin.NUM_QUALITY_EXAMPLE=10"])


def test_macro_override_far_from_every_name_lists_the_macros():
  with pytest.raises(main.ConfigError, match=r"Valid macros: BATCH_SIZE, DRAFTER, DRAFT_THRESHOLDS, GRID,"):
    _configure(["--gin_file=configs/demo.gin", "--gin.ZZZ=1"])


def test_a_macro_of_an_included_or_later_file_is_known():
  # T5_SMALL_CHECKPOINT comes from models/t5_small.gin, included by the pair file.
  with pytest.raises(main.ConfigError, match="Did you mean T5_SMALL_CHECKPOINT"):
    _configure(["--gin_file=configs/runs/sweep.gin",
                "--gin_file=configs/models/t5_small_large.gin",
                "--gin.T5_SMALL_CHECKPOINTS='/x'"])


def test_misspelt_macro_reference_in_a_value():
  with pytest.raises(main.ConfigError, match=r"%GRIDD is not a macro .* Did you mean GRID\?"):
    _configure(["--gin_file=configs/demo.gin", "--gin.GRID=%GRIDD"])


def test_misspelt_parameter_and_configurable():
  with pytest.raises(main.ConfigError, match=r"doesn't have a parameter named 'gridd'\. "
                                             r"Did you mean grid\?"):
    _configure(["--gin_file=configs/demo.gin", "--gin.sweep.run_sweep.gridd='paper'"])
  with pytest.raises(main.ConfigError, match=r"No configurable matching 'sweep\.run_swep'\. "
                                             r"Did you mean sweep\.run_sweep\?"):
    _configure(["--gin_file=configs/demo.gin", "--gin.sweep.run_swep.grid='paper'"])
  with pytest.raises(main.ConfigError, match=r"'@sweep\.run_swep'\. Did you mean "
                                             r"sweep\.run_sweep\?"):
    _configure(["--gin_file=configs/demo.gin", "--gin.main.run.fn=@sweep.run_swep"])


def test_unquoted_string_value_names_the_fix():
  with pytest.raises(main.ConfigError, match="not gin syntax .* quote strings"):
    _configure(["--gin_file=configs/demo.gin", "--gin.GRID='paper"])


def test_required_value_left_unset():
  with pytest.raises(main.ConfigError, match=r"OUTPUT_DIR is required .* "
                                             r"--gin\.OUTPUT_DIR=VALUE"):
    _configure(["--gin_file=configs/runs/sweep.gin",
                "--gin_file=configs/models/demo_pair.gin", "--gin.TASK='gettext_en_de'"])


def test_valid_overrides_still_apply():
  _configure(["--gin_file=configs/demo.gin", "--gin.GRID='paper'",
              "--gin.sweep.run_sweep.repeats=1", "--gin.MY_SPLIT='train'",
              "--gin.SPLIT=%MY_SPLIT", "--gin_bindings=NUM_DRAFT_TOKENS = 3"])
  assert gin.query_parameter("GRID/macro.value") == "paper"
  assert gin.query_parameter("NUM_DRAFT_TOKENS/macro.value") == 3
  assert gin.query_parameter("MY_SPLIT/macro.value") == "train"
  assert gin.query_parameter("spec_cascade_jax.evaluation.sweep.run_sweep.repeats") == 1


def test_main_exits_2_on_a_misspelt_binding_without_running(monkeypatch, capsys):
  monkeypatch.setattr(gin, "get_configurable", lambda *a: pytest.fail("the job ran"))
  with pytest.raises(SystemExit) as e:
    main.main(["--gin_file=configs/demo.gin", "--gin.GRIDD='demo'"])
  assert e.value.code == 2
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(err) == 1 and err[0].startswith("python -m spec_cascade_jax.main: error: ")
  assert "Did you mean GRID?" in err[0]


# ------------------------------------------------------------------ the job's settings


def _job_argv(run_file, tmp_path, *bindings):
  """A run file with placeholder models: the settings are checked before any
  model (or data) is loaded, so the model names never matter here."""
  return [f"--gin_file=configs/runs/{run_file}", "--gin.DRAFTER='no-drafter'",
          "--gin.VERIFIER='no-verifier'", "--gin.TASK='gettext_en_de'",
          f"--gin.OUTPUT_DIR='{tmp_path}'", *bindings]


@pytest.fixture
def no_work(monkeypatch):
  """Fails the test if the job loads a model or a task split; no seqio (the
  unknown-task message then names the bundled tasks and how to get seqio's)."""
  from spec_cascade_jax.evaluation import infer
  monkeypatch.setattr(infer, "resolve_model", lambda *a: pytest.fail("a model was loaded"))
  monkeypatch.setattr(infer, "load_task", lambda *a, **k: pytest.fail("data was loaded"))
  monkeypatch.setitem(sys.modules, "seqio", None)


@pytest.mark.parametrize("run_file, bindings, message", [
    ("eval.gin", ["--gin.METHOD='nope'"], "Unknown method 'nope'; valid methods: ("),
    ("infer.gin", ["--gin.METHOD='nope'"], "Unknown method 'nope'; valid methods: ("),
    ("eval.gin", ["--gin.ALPHA=1.5"], "alpha=1.5 is outside [0, 1], the meaningful range for "
                                      "'token_v3'"),
    ("eval.gin", ["--gin.METHOD='speculative'", "--gin.NUM_DRAFT_TOKENS=500",
                  "--gin.MAX_NEW_TOKENS=16"], "num_draft_tokens=500 exceeds max_new_tokens=16"),
    ("eval.gin", ["--gin.METHOD='lossy'", "--gin.ALPHA=1.0"],
     "alpha=1 is outside [0, 1), the meaningful range for 'lossy'"),
    ("eval.gin", ["--gin.TASK='nope'"], "unknown task 'nope'. Known tasks: gettext_en_de "),
])
def test_a_bad_method_alpha_or_task_is_one_line_and_exit_code_2(
    no_work, capsys, tmp_path, run_file, bindings, message):
  with pytest.raises(SystemExit) as e:
    main.main(_job_argv(run_file, tmp_path, *bindings))
  assert e.value.code == 2
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(err) == 1, err
  assert err[0].startswith(f"python -m spec_cascade_jax.main: error: {message}"), err[0]
  assert "In call to configurable" not in err[0]


def test_an_unknown_task_lists_the_tasks_not_a_seqio_requirement(no_work, capsys, tmp_path):
  with pytest.raises(SystemExit):
    main.main(_job_argv("infer.gin", tmp_path, "--gin.TASK='nope'"))
  line = capsys.readouterr().err.strip()
  assert "is a seqio task" not in line
  for part in ("unknown task 'nope'", "gettext_en_de (bundled)", "gettext_en_de_<k>shot",
               "seqio tasks, which need seqio", "pip install seqio"):
    assert part in line, part


def test_a_bug_in_the_job_keeps_its_traceback(monkeypatch, tmp_path):
  """Only UsageError is a user's mistake: any other error propagates."""
  from spec_cascade_jax.evaluation import infer

  def broken(*args, **kwargs):
    raise ValueError("a bug, not a setting")
  monkeypatch.setattr(infer, "check_job", broken)
  with pytest.raises(ValueError, match="a bug, not a setting"):
    main.main(_job_argv("eval.gin", tmp_path))


def test_a_bad_method_from_the_command_line_exits_2_without_a_traceback(tmp_path):
  res = _cli(*_job_argv("eval.gin", tmp_path, "--gin.METHOD='nope'"))
  assert res.returncode == 2, res.stderr
  lines = [line for line in res.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
  assert lines[0].startswith("python -m spec_cascade_jax.main: error: Unknown method 'nope'")


# ------------------------------------------------------------------ --help


def test_every_bundled_config_has_a_one_line_description():
  configs = main.bundled_configs()
  assert len(configs) >= 20 and ("configs/demo.gin", configs[0][1]) in configs
  for path, desc in configs:
    assert desc and len(desc) <= 80, (path, desc)
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      assert f.readline() == f"# {desc}\n", path


def test_help_explains_layering_and_overrides_and_lists_the_configs():
  res = _cli("--help")
  assert res.returncode == 0, res.stderr
  text = res.stdout
  for phrase in ("--gin_file may be repeated", "a later file overrides",
                 "--gin.NAME=VALUE", "--gin_search_paths", "exit code 2"):
    assert phrase in text, phrase
  for path, desc in main.bundled_configs():
    assert any(path in line and desc in line for line in text.splitlines()), path
