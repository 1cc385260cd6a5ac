"""The error a caller's mistake raises (pure Python, no jax)."""

from __future__ import annotations


class UsageError(ValueError):
  """A setting the caller chose is wrong: an unknown method, rule or task, an α
  out of range, an argument the method does not take, sampling without a key.
  Raised before anything is compiled; the message says what to pass instead.
  The command line (main.py) prints it on one line and exits with code 2."""
