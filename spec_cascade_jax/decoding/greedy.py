"""Batched greedy verifier-only decoding of token-id inputs (few compiled shapes).

    outs = greedy_ids(model, [[13, 7, 1], [5, 1]])        # EOS kept where produced

Used by training (distillation targets, validation BLEU: `recipes.greedy_translate`)
and evaluation (translation quality, drafter agreement).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spec_cascade_jax.decoding import api
from spec_cascade_jax.decoding.padding import pad_batch


def greedy_ids(model, inputs: Sequence[Sequence[int]], batch_size: int = 64,
               max_new_tokens: int = 64, progress: str | None = None) -> list[list[int]]:
  """Greedy verifier-only outputs of `model` for token-id inputs (EOS appended),
  batched by similar length; each output ends at its EOS (kept) or runs
  `max_new_tokens` long. In input order. `progress`: a tqdm bar with this
  description over the batches (None: silent)."""
  order = np.argsort([len(x) for x in inputs], kind="stable")  # similar lengths together
  out: list = [None] * len(inputs)
  starts = range(0, len(order), batch_size)
  if progress is not None:
    from tqdm.auto import tqdm
    starts = tqdm(starts, desc=progress, unit="batch")
  for s in starts:
    idx = order[s:s + batch_size]
    res = api.generate(model, model, pad_batch([inputs[i] for i in idx]), method="verifier",
                       temperature=0.0, max_new_tokens=max_new_tokens)
    for i, row in zip(idx, np.asarray(res.tokens).tolist()):
      out[i] = row[:row.index(1) + 1] if 1 in row else row
  return out
