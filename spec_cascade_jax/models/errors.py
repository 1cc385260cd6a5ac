"""Reading Hugging Face model directories, shared by every family: the
errors each reader raises, and the directory's config.json."""

from __future__ import annotations

import json
import os
from typing import Any


class HFCheckpointError(ValueError):
  """A Hugging Face model directory that cannot be read as one of our models."""


class HFCheckpointNotFoundError(HFCheckpointError, FileNotFoundError):
  """A file the directory must contain is missing."""


def read_hf_config(path: str, hint: str = "") -> dict[str, Any]:
  """The parsed `path/config.json`; `hint` ends the missing-file error (how a
  family's config.json can be written)."""
  cfg_file = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_file):
    raise HFCheckpointNotFoundError(
        f"{cfg_file} not found: a Hugging Face model directory needs config.json next to "
        f"its weights{hint}.")
  try:
    with open(cfg_file) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise HFCheckpointError(f"{cfg_file} is not valid JSON ({e}); re-download it.") from e
