"""Suite-wide pytest hooks: a skip budget for CI, the `slow` marker, and the
tiny model pairs several test files share.

A test may skip only where what it needs is optional by design (an optional
extra, a system tool). Where everything is installed, as in CI, no test should
skip, and a skip there hides a test that did not run. With the environment
variable SCJ_MAX_SKIPS=N set (`.ci/run` sets 0), every skip is listed with its
reason at the end of the run, and a run that otherwise passed fails when more
than N tests (or modules, skipped while collected) were skipped. Unset, skips
are reported as pytest always does. Expected failures (xfail) are not skips.

The fast tier: `python -m pytest -q -m "not slow" tests` leaves out the tests
marked `@pytest.mark.slow`: Monte Carlo laws, multi-process partitioning,
the notebook, Hugging Face parity, training and sweep runs, benchmark smoke
runs, seqio/TensorFlow, checks of the shipped corpus and of t5x checkpoint
files, and integration checks that a faster test covers in the core (T5-pair
decodes beyond one γ, bfloat16, real-size shapes). What
remains is the core of the suite, for iteration. CI (`.ci/run`) runs
everything.

Both run in two processes (pytest-xdist, README's commands). CI uses `-n 2
--dist loadfile`: the tests of one file stay in one process, so its module
fixtures are built once; the two partitioning files share one 8-device
worker run across the processes (`eight_device_run`). The fast tier's
fixtures are cheap, so `-n 2` balances it test by test. Without `-n` the
suite runs in one process.
"""

from __future__ import annotations

import gc
import os
import sys

import pytest

pytest_plugins = ["pytester"]   # tests/test_ci_skips.py runs pytest inside pytest

MAX_SKIPS_ENV = "SCJ_MAX_SKIPS"


class SkipBudget:
  """Collects every skip of one session; fails a passing session over budget."""

  def __init__(self, budget: int):
    self.budget = budget
    self.skips: list[str] = []

  def _record(self, report):
    if not report.skipped or hasattr(report, "wasxfail"):
      return
    where, reason = report.nodeid or "<rootdir>", report.longrepr
    if isinstance(reason, tuple) and len(reason) == 3:   # (path, line, "Skipped: why")
      _, line, reason = reason
      where += f" (line {line})"
      reason = reason.removeprefix("Skipped: ")
    self.skips.append(f"{where}: {reason}")

  def pytest_collectreport(self, report):
    self._record(report)   # a module-level importorskip skips a whole module here

  def pytest_runtest_logreport(self, report):
    self._record(report)

  def pytest_sessionfinish(self, session, exitstatus):
    if len(self.skips) > self.budget and exitstatus == pytest.ExitCode.OK:
      session.exitstatus = pytest.ExitCode.TESTS_FAILED

  def pytest_terminal_summary(self, terminalreporter):
    if not self.skips:
      return
    over = len(self.skips) > self.budget
    terminalreporter.section(f"skips ({MAX_SKIPS_ENV}={self.budget})", sep="=",
                             red=over, yellow=not over)
    for line in self.skips:
      terminalreporter.write_line(line)
    if over:
      terminalreporter.write_line(
          f"{len(self.skips)} skipped, more than {MAX_SKIPS_ENV}={self.budget} allows: "
          "this run fails. Install what the skipped tests need (setup.py's extras, "
          "dpkg-deb) or fix the skip.", red=True)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: left out of the fast tier (`-m \"not slow\"`): seconds or more "
      "on a 2-core CPU beyond what the core needs; CI runs it")
  value = os.environ.get(MAX_SKIPS_ENV, "").strip()
  if not value or hasattr(config, "workerinput"):   # xdist workers: the controller counts
    return
  try:
    budget = int(value)
  except ValueError:
    budget = -1
  if budget < 0:
    raise pytest.UsageError(f"{MAX_SKIPS_ENV}={value!r}: expected a count >= 0")
  config.pluginmanager.register(SkipBudget(budget), "scj_skip_budget")


# ---------------------------------------------------------------------------
# Compiled executables are released after each test file. XLA:CPU maps a few
# memory regions for every executable it compiles, and JAX's caches keep them
# alive; over the ~500 tests of one process that passed Linux's default
# vm.max_map_count (65530), after which mmap failed: pthread_create inside
# tf.data failed and aborted the run, or the process died of a segmentation
# fault (both seen in CI at ~95%). With the caches cleared between files the
# count stays at a few thousand; a file that shares compilations with another
# recompiles them, which costs seconds.


def pytest_runtest_teardown(item, nextitem):
  jax = sys.modules.get("jax")
  if jax is not None and (nextitem is None or nextitem.path != item.path):
    jax.clear_caches()
    gc.collect()


# ---------------------------------------------------------------------------
# Tiny model pairs shared by several test files: built once per session (the
# jitted decoding functions are cached by model configuration, so a shared
# pair also shares their compilations). Treat them as read-only.


@pytest.fixture(scope="session")
def tiny_t5_2_1():
  """(drafter, verifier): random tiny T5s, verifier 2 layers, drafter 1, V = 64
  (`testing.tiny_t5_pair(PRNGKey(3), ...)`); test_kernel.py, test_lookup.py."""
  import jax  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.testing import tiny_t5_pair  # pylint: disable=g-import-not-at-top
  return tiny_t5_pair(jax.random.PRNGKey(3), verifier_layers=2, drafter_layers=1)


@pytest.fixture(scope="session")
def tiny_t5_v32():
  """(drafter, verifier): `testing.tiny_t5_pair(vocab_size=32, verifier_layers=2)`
  (PRNGKey(0)); test_configs.py, test_sweep.py."""
  from spec_cascade_jax.testing import tiny_t5_pair  # pylint: disable=g-import-not-at-top
  return tiny_t5_pair(vocab_size=32, verifier_layers=2)


# ---------------------------------------------------------------------------
# The partitioning tests' one 8-fake-device worker (tests/mesh_worker.py).


@pytest.fixture(scope="session")
def eight_device_run(request, tmp_path_factory):
  """(out_dir, {part: error text or None}): tests/mesh_worker.py run once per
  test run, for the parts whose tests were collected ("t5":
  test_partitioning.py's `mesh_run`, "lm": test_lm_partitioning.py's
  `lm_run`); those module fixtures read their part's files from out_dir.
  Under xdist the worker processes share the run: the first one to take the
  lock runs it, the others wait and read its results."""
  import fcntl  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import mesh_worker  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):   # <run's basetemp>/popen-gwN: share the run's
    root = root.parent
  out, done = root / "eight_devices", root / "eight_devices.json"
  with open(root / "eight_devices.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      out.mkdir(exist_ok=True)
      errors = mesh_worker.run(str(out), mesh_worker.parts_for(request.session.items))
      done.write_text(json.dumps(errors))
  return str(out), json.loads(done.read_text())
