"""Batched greedy verifier-only decoding of token-id inputs (few compiled shapes).

    outs = greedy_ids(model, [[13, 7, 1], [5, 1]])        # EOS kept where produced
    texts = greedy_translate(model, vocab, ["Open file"])

Used by training (distillation targets, validation BLEU) and evaluation
(translation quality, drafter agreement).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spec_cascade_jax.data.padding import pad_batch
from spec_cascade_jax.data.vocab import encode_with_eos
from spec_cascade_jax.decoding import api


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


def greedy_translate(model, vocab, sources: Sequence[str], batch_size: int = 64,
                     max_new_tokens: int = 64, max_len: int = 128) -> list[str]:
  """Greedy verifier-only decoding of `sources` with `model`, batched."""
  ids = [encode_with_eos(vocab, x, max_len) for x in sources]
  return [vocab.decode(o) for o in greedy_ids(model, ids, batch_size, max_new_tokens)]
