"""The fingerprint of a vocabulary file: what a model records of its
vocabulary (models/vocab_record.py), compared before any decoding."""

from __future__ import annotations

import functools
import hashlib


@functools.lru_cache(maxsize=None)
def file_fingerprint(path: str) -> str:
  """sha256 of a file's bytes (a SentencePiece .model, a tokenizer.json)."""
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()
