"""tools/mutants.py stays applicable: every mutant's line is in today's source.

The mutation check itself is a developer tool (minutes per run, not CI); this
keeps its list from rotting when the code it mutates is edited.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import mutants  # noqa: E402


def test_every_mutant_applies_once_and_changes_its_line():
  names = [m.name for m in mutants.MUTANTS]
  assert len(names) == len(set(names))
  for m in mutants.MUTANTS:
    mutants.check_applies(m)   # raises if the line is gone or ambiguous
    assert m.old != m.new and m.why, m.name
  # The two mutants the audit found surviving, and the two it found caught.
  assert {"opt_tv_unscaled", "token_v3_max_q", "residual_sign",
          "accept_all_not_leading_run"} <= set(names)
