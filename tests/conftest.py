"""Suite-wide pytest hooks: a skip budget for CI.

A test may skip only where what it needs is optional by design (an optional
extra, a system tool). Where everything is installed, as in CI, no test should
skip, and a skip there hides a test that did not run. With the environment
variable SCJ_MAX_SKIPS=N set (`.ci/run` sets 0), every skip is listed with its
reason at the end of the run, and a run that otherwise passed fails when more
than N tests (or modules, skipped while collected) were skipped. Unset, skips
are reported as pytest always does. Expected failures (xfail) are not skips.
"""

from __future__ import annotations

import os

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
  value = os.environ.get(MAX_SKIPS_ENV, "").strip()
  if not value:
    return
  try:
    budget = int(value)
  except ValueError:
    budget = -1
  if budget < 0:
    raise pytest.UsageError(f"{MAX_SKIPS_ENV}={value!r}: expected a count >= 0")
  config.pluginmanager.register(SkipBudget(budget), "scj_skip_budget")
