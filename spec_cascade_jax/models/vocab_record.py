"""Which vocabulary a model was trained with: a name and a fingerprint.

A model decoded with another vocabulary than its own produces garbage without
any error (the bundled verifier scores 0.25 BLEU instead of 35 with a wrong
8k vocabulary of the same size). So a model saved in our format records its
vocabulary in config.json,

    "vocabulary": {"name": "gettext", "sha256": "<sha256 of the .model file>"}

loading puts it on the model (`model.vocabulary`, a `VocabularyRecord`, None
for checkpoints that record none: Hugging Face and t5x), and
`data.vocab.check_vocabulary` compares it with the vocabulary a task, a sweep
or `load_vocabulary(..., models=...)` is about to use. The fingerprint decides;
the name is for the message.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class VocabularyRecord:
  """name: the vocabulary's bundled name (or file name); sha256: the
  fingerprint of its file (`data.fingerprint`)."""
  name: str
  sha256: str

  def to_dict(self) -> dict[str, str]:
    return {"name": self.name, "sha256": self.sha256}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any] | None) -> "VocabularyRecord | None":
    """The record of a config.json's "vocabulary" entry (None: not recorded)."""
    if d is None:
      return None
    if not isinstance(d, Mapping) or not isinstance(d.get("sha256"), str):
      raise ValueError(f"\"vocabulary\" must be {{\"name\": ..., \"sha256\": ...}}; got {d!r}.")
    return cls(name=str(d.get("name", "")), sha256=d["sha256"])
