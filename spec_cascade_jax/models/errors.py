"""Errors of reading Hugging Face model directories, shared by every family."""

from __future__ import annotations


class HFCheckpointError(ValueError):
  """A Hugging Face model directory that cannot be read as one of our models."""


class HFCheckpointNotFoundError(HFCheckpointError, FileNotFoundError):
  """A file the directory must contain is missing."""
