"""Few-shot prompts for decoder-only LMs: one format shared by the bundled
task and the seqio tasks, and their postprocessors.

A decoder-only pair translates by continuing a prompt, as the paper evaluates
Gemma (WMT EN→DE 5-shot). `gettext_en_de_<k>shot` (k = 0, 1, 2, …; the
README uses 5) is the bundled gettext_en_de split in that form:

    Translate English to German.

    English: Open file
    German: Datei öffnen

    … (k examples) …

    English: <the input>
    German:

The k examples are the same for every input: drawn once, with a fixed seed,
from the training split's one-line messages of at most MAX_SHOT_CHARS
characters (the validation and test splits hold other packages, so a shot is
never the input). The model's continuation is cut at its first line break
(`answer_line`): what follows is the model starting the next example.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Sequence

import numpy as np

BASE_TASK = "gettext_en_de"
_PROMPTED = re.compile(rf"^{BASE_TASK}_(\d+)shot$")
MAX_SHOT_CHARS = 60
SHOT_SEED = 0


@dataclasses.dataclass(frozen=True)
class FewShotFormat:
  """How shots and the query are joined: seqio's
  `seqio.experimental.fewshot_preprocessor` layout, so the offline gettext
  prompts (`render`) and the seqio tasks (`seqio_preprocessor`, tasks.py)
  are the same text:

      instruction SEP  (inputs_prefix x_i targets_prefix y_i SEP)*k
      inputs_prefix x targets_prefix.rstrip()
  """
  instruction: str
  inputs_prefix: str
  targets_prefix: str
  separator: str = "\n\n"

  def render(self, shots: Sequence[tuple[str, str]], query: str) -> str:
    body = "".join(f"{self.inputs_prefix}{x}{self.targets_prefix}{y}{self.separator}"
                   for x, y in shots)
    head = f"{self.instruction}{self.separator}" if self.instruction else ""
    return f"{head}{body}{self.inputs_prefix}{query}{self.targets_prefix.rstrip()}"

  def seqio_preprocessor(self):
    from seqio import experimental  # pylint: disable=g-import-not-at-top
    return functools.partial(experimental.fewshot_preprocessor,
                             inputs_prefix=self.inputs_prefix,
                             targets_prefix=self.targets_prefix,
                             example_separator=self.separator,
                             prompt=self.instruction or None)


TRANSLATE_EN_DE = FewShotFormat("Translate English to German.", "English: ", "\nGerman: ")
GSM8K = FewShotFormat("", "Question: ", "\nAnswer: ")


def num_shots(task: str) -> int | None:
  """k for a prompted task name (`gettext_en_de_5shot` -> 5); None for others."""
  m = _PROMPTED.match(task)
  return int(m.group(1)) if m else None


def pick_shots(train_rows: Sequence[dict], k: int, seed: int = SHOT_SEED) -> list[dict]:
  """k one-line training pairs of at most MAX_SHOT_CHARS characters per side."""
  if k == 0:
    return []
  pool = [r for r in train_rows
          if "\n" not in r["en"] + r["de"] and max(len(r["en"]), len(r["de"])) <= MAX_SHOT_CHARS]
  if len(pool) < k:
    raise ValueError(f"only {len(pool)} training pairs can be shots; asked for {k}.")
  idx = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
  return [pool[i] for i in sorted(idx)]


def prompt(shots: Sequence[dict], source: str) -> str:
  """The gettext prompt text for one input (see the module docstring)."""
  return TRANSLATE_EN_DE.render([(s["en"], s["de"]) for s in shots], source)


def answer_line(text: str, example: Any = None, is_target: bool = False) -> str:
  """seqio-style postprocessor: a prediction up to its first line break,
  stripped; targets unchanged."""
  del example
  if is_target:
    return text
  return text.split("\n", 1)[0].strip()


_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def final_number(text: str, example: Any = None, is_target: bool = False) -> str:
  """seqio-style postprocessor for GSM8K: the number after "####" (the
  dataset's answer format, which the 8 shots show), else the last number of
  the first answer (the text before the next "Question:"); commas dropped;
  "" when there is none."""
  del example, is_target
  text = text.split("Question:", 1)[0]
  m = _FINAL.search(text)
  if m:
    found = m.group(1)
  else:
    numbers = _NUMBER.findall(text)
    found = numbers[-1] if numbers else ""
  found = found.replace(",", "")
  return found[:-2] if found.endswith(".0") else found
