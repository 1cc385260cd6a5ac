"""The skip budget of tests/conftest.py (SCJ_MAX_SKIPS, set by .ci/run).

Each test runs a small pytest session in-process under this suite's own
conftest: one test passes, one skips, one module skips while collected, one
expected failure (not a skip).
"""

from __future__ import annotations

import pathlib

import pytest

CONFTEST = pathlib.Path(__file__).with_name("conftest.py")


@pytest.fixture
def session(pytester):
  pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
  pytester.makepyfile(
      test_some="""
          import pytest

          def test_runs():
            pass

          def test_skips():
            pytest.skip("the deliberate skip")

          @pytest.mark.xfail(reason="expected", strict=True)
          def test_xfails():
            assert False
      """,
      test_module_skip="""
          import pytest

          pytest.importorskip("scj_no_such_module")

          def test_never_runs():
            pass
      """)
  return pytester


def test_a_skip_fails_the_run_when_none_are_allowed(session, monkeypatch):
  monkeypatch.setenv("SCJ_MAX_SKIPS", "0")
  result = session.runpytest("-p", "no:cacheprovider")
  result.assert_outcomes(passed=1, skipped=2, xfailed=1)
  assert result.ret == pytest.ExitCode.TESTS_FAILED
  result.stdout.fnmatch_lines([
      "*skips (SCJ_MAX_SKIPS=0)*",
      "test_module_skip.py (line *): could not import 'scj_no_such_module'*",
      "test_some.py::test_skips (line *): the deliberate skip",
      "2 skipped, more than SCJ_MAX_SKIPS=0 allows: this run fails.*",
  ])


def test_skips_within_the_budget_or_without_one_pass(session, monkeypatch):
  monkeypatch.setenv("SCJ_MAX_SKIPS", "2")
  result = session.runpytest("-p", "no:cacheprovider")
  assert result.ret == pytest.ExitCode.OK
  result.stdout.fnmatch_lines(["*skips (SCJ_MAX_SKIPS=2)*"])
  monkeypatch.delenv("SCJ_MAX_SKIPS")
  result = session.runpytest("-p", "no:cacheprovider")
  assert result.ret == pytest.ExitCode.OK
  result.assert_outcomes(passed=1, skipped=2, xfailed=1)
  result.stdout.no_fnmatch_line("*SCJ_MAX_SKIPS*")


def test_a_failing_run_stays_failed_and_a_bad_budget_is_refused(session, monkeypatch):
  session.makepyfile(test_fails="def test_fails():\n  assert False\n")
  monkeypatch.setenv("SCJ_MAX_SKIPS", "5")
  assert session.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.TESTS_FAILED
  monkeypatch.setenv("SCJ_MAX_SKIPS", "-1")
  result = session.runpytest("-p", "no:cacheprovider")
  assert result.ret == pytest.ExitCode.USAGE_ERROR
  result.stderr.fnmatch_lines(["*SCJ_MAX_SKIPS='-1': expected a count >= 0*"])
