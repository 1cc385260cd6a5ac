"""Token-id rows -> one zero-padded int32 array: the project's one padding helper.

    pad_batch([[5, 1], [7, 8, 1]])                  # [2, 16]: rounded up to 16
    pad_batch([[5, 1]], length=32)                  # [1, 32]: a fixed length
    pad_batch([[5, 1]], length=32, rows=4)          # [4, 32]: rows 1..3 a lone EOS

Decoding (greedy.py), training, evaluation and the benchmarks all pad with
it; it lives in decoding, the lowest package that pads, and needs nothing
but numpy. Rounding
the length up to a multiple, or padding to a length bucket, keeps the number
of distinct input shapes (one jit compilation each) small. Filler rows hold a
lone EOS (id 1), a valid input that decodes quickly; callers drop their
outputs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

EOS = 1


def pad_batch(seqs: Sequence[Sequence[int]], length: int | None = None,
              multiple: int = 16, rows: int | None = None) -> np.ndarray:
  """[rows, length] int32: row i holds seqs[i], then zeros (0 = pad).

  Args:
    seqs: token-id rows.
    length: the padded length; None: the longest row rounded up to `multiple`.
    multiple: see `length`.
    rows: the number of rows (≥ len(seqs)); rows past len(seqs) hold a lone
      EOS. None: len(seqs).
  Raises:
    ValueError: a row is longer than `length`, or there are more than `rows`.
  """
  longest = max((len(s) for s in seqs), default=0)
  if length is None:
    length = -(-longest // multiple) * multiple
  if longest > length:
    raise ValueError(f"a row has {longest} tokens, more than the padded length {length}.")
  rows = len(seqs) if rows is None else rows
  if len(seqs) > rows:
    raise ValueError(f"{len(seqs)} rows do not fit in a batch of {rows}.")
  out = np.zeros((rows, length), np.int32)
  if length:
    out[len(seqs):, 0] = EOS
  for i, s in enumerate(seqs):
    out[i, :len(s)] = s
  return out
