"""The latency protocol of DESIGN.md section 5.

Per-example wall-clock time at batch 1 (the paper's setting), compile time
excluded (each input shape is decoded once untimed first), the median of
`repeats` runs per example; a method's latency is the sum over examples, and
it is reported relative to verifier-only decoding measured in the same run.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np


def time_per_example(decode_one: Callable[[np.ndarray], object],
                     inputs: Sequence[np.ndarray], repeats: int = 3) -> np.ndarray:
  """Median seconds per example of `decode_one(input_ids [1, S])`.

  `decode_one` must block until its result is ready (generate() does: it
  returns numpy arrays). Shapes not seen before are warmed up untimed.
  """
  seen: set[tuple[int, ...]] = set()
  out = np.zeros(len(inputs))
  for i, ids in enumerate(inputs):
    if ids.shape not in seen:
      decode_one(ids)  # compile (excluded from the timing)
      seen.add(ids.shape)
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      decode_one(ids)
      times.append(time.perf_counter() - t0)
    out[i] = float(np.median(times))
  return out


def pad_to_bucket(ids: Sequence[int], multiple: int = 16) -> np.ndarray:
  """[1, S'] int32 with S' the next multiple of `multiple` (few compilations)."""
  length = -(-len(ids) // multiple) * multiple
  arr = np.zeros((1, length), np.int32)
  arr[0, :len(ids)] = ids
  return arr
