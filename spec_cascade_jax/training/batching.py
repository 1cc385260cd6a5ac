"""Length-bucketed and packed batching for sequence-to-sequence training.

`PackedBatcher` (below) packs several examples per row, as t5x/seqio do;
`BucketedBatcher` pads each example to its length bucket.

Bucketing: examples are grouped by length into a few buckets; each bucket
pads to its own boundary and batch size is chosen so that every batch holds
about `tokens_per_batch` tokens. With boundaries (8, 16, 24, 36, ...) a
quarter to a third of the slots are padding on gettext_en_de, and the jitted
train step compiles once per bucket shape (a handful of compilations)
instead of once per batch.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from spec_cascade_jax.decoding.padding import pad_batch


@dataclasses.dataclass(frozen=True)
class Batch:
  inputs: np.ndarray    # [B, S] int32, 0 = pad, EOS appended
  targets: np.ndarray   # [B, T] int32, 0 = pad, EOS appended
  # Packed rows only: [B, S] / [B, T] int32, 1, 2, ... per example, 0 = pad.
  input_segments: np.ndarray | None = None
  target_segments: np.ndarray | None = None

  @property
  def decoder_inputs(self) -> np.ndarray:
    """Targets shifted right with the decoder start token 0: [B, T]. In packed
    rows every example starts with its own start token."""
    shifted = np.concatenate(
        [np.zeros_like(self.targets[:, :1]), self.targets[:, :-1]], axis=1)
    if self.target_segments is not None:
      seg = self.target_segments
      starts = np.concatenate(
          [np.ones_like(seg[:, :1], bool), seg[:, 1:] != seg[:, :-1]], axis=1)
      shifted = np.where(starts, 0, shifted)
    return shifted

  @property
  def model_kwargs(self) -> dict:
    """Segment ids for `T5Model.logits` (empty for unpacked batches)."""
    if self.input_segments is None:
      return {}
    return {"encoder_segment_ids": self.input_segments,
            "decoder_segment_ids": self.target_segments}

  @property
  def num_tokens(self) -> int:
    return int((self.targets > 0).sum())


def default_boundaries(max_len: int) -> tuple[int, ...]:
  b, out = 8, []
  while b < max_len:
    out.append(b)
    b = int(b * 1.5) if b >= 16 else b * 2
  out.append(max_len)
  return tuple(out)


def _bucket_of(length: int, boundaries: Sequence[int]) -> int:
  for i, b in enumerate(boundaries):
    if length <= b:
      return i
  raise ValueError(f"length {length} exceeds the largest bucket {boundaries[-1]}")


class BucketedBatcher:
  """Deterministic, resumable stream of length-bucketed batches.

  The order of epoch `e` depends only on (seed, e), so `batches(start_step)`
  resumes exactly where an interrupted run stopped.

  Args:
    examples: sequence of (input_ids, target_ids), each already ending in EOS.
    tokens_per_batch: target number of (padded) tokens per side per batch.
    max_len: longer examples are truncated (keeping EOS last).
  """

  def __init__(self, examples: Sequence[tuple[Sequence[int], Sequence[int]]],
               tokens_per_batch: int = 4096, max_len: int = 128, seed: int = 0,
               boundaries: Sequence[int] | None = None):
    if not examples:
      raise ValueError("BucketedBatcher got no examples.")
    self.boundaries = tuple(boundaries or default_boundaries(max_len))
    self.seed = seed
    self.tokens_per_batch = tokens_per_batch
    self._examples = []
    for inp, tgt in examples:
      inp = list(inp)[:max_len]
      tgt = list(tgt)[:max_len]
      inp[-1], tgt[-1] = 1, 1  # truncated sequences still end in EOS
      self._examples.append((inp, tgt))
    self._bucket_ids = np.array(
        [_bucket_of(max(len(i), len(t)), self.boundaries) for i, t in self._examples])
    self._epoch_cache: dict[int, list[np.ndarray]] = {}

  def _epoch(self, epoch: int) -> list[np.ndarray]:
    """Index arrays of every batch of one epoch, in training order."""
    if epoch in self._epoch_cache:
      return self._epoch_cache[epoch]
    rng = np.random.default_rng([self.seed, epoch])
    batches = []
    for b, length in enumerate(self.boundaries):
      idx = np.flatnonzero(self._bucket_ids == b)
      if idx.size == 0:
        continue
      idx = rng.permutation(idx)
      bs = max(1, self.tokens_per_batch // length)
      # Drop the ragged tail: keeps one batch shape per bucket (one compile).
      for s in range(0, idx.size - bs + 1, bs):
        batches.append(idx[s:s + bs])
      if idx.size < bs:  # a tiny bucket still contributes one batch
        batches.append(idx)
    order = rng.permutation(len(batches))
    self._epoch_cache = {epoch: [batches[i] for i in order]}
    return self._epoch_cache[epoch]

  @property
  def steps_per_epoch(self) -> int:
    return len(self._epoch(0))

  def make_batch(self, idx: np.ndarray) -> Batch:
    exs = [self._examples[i] for i in idx]
    length = self.boundaries[_bucket_of(max(max(len(i), len(t)) for i, t in exs),
                                        self.boundaries)]
    return Batch(pad_batch([i for i, _ in exs], length),
                 pad_batch([t for _, t in exs], length))

  def batches(self, start_step: int = 0) -> Iterator[Batch]:
    """Infinite stream of batches starting at global step `start_step`."""
    spe = self.steps_per_epoch
    step = start_step
    while True:
      epoch, offset = divmod(step, spe)
      plan = self._epoch(epoch)
      for idx in plan[offset:]:
        yield self.make_batch(idx)
        step += 1


class PackedBatcher(BucketedBatcher):
  """Deterministic, resumable stream of packed batches (t5x/seqio-style packing).

  Several examples share a row of `max_len` input and `max_len` target slots,
  marked by segment ids; `T5Model.logits` keeps them apart (attention within a
  segment only, positions restarting at each example). Every batch has one
  shape, [tokens_per_batch // max_len, max_len] per side: one compilation. On
  gettext_en_de (64 slots) 88% of input and 98% of target slots hold real
  tokens, against 67% / 75% with 4,096-token length buckets.

  Rows are filled first-fit over the last `open_rows` partly filled rows, in a
  per-epoch shuffled order that depends only on (seed, epoch).
  """

  def __init__(self, examples, tokens_per_batch: int = 4096, max_len: int = 128,
               seed: int = 0, open_rows: int = 32):
    if tokens_per_batch < max_len:
      raise ValueError(f"tokens_per_batch={tokens_per_batch} is below max_len="
                       f"{max_len}: a packed batch needs at least one row.")
    super().__init__(examples, tokens_per_batch, max_len, seed, boundaries=(max_len,))
    self.max_len = max_len
    self.rows_per_batch = tokens_per_batch // max_len
    self.open_rows = open_rows

  def _epoch(self, epoch: int) -> list[list[list[int]]]:
    """Batches of one epoch: each a list of rows, each a list of example ids."""
    if epoch in self._epoch_cache:
      return self._epoch_cache[epoch]
    rng = np.random.default_rng([self.seed, epoch])
    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # free (input, target) slots per row
    open_ids: list[int] = []          # rows still taking examples
    for i in rng.permutation(len(self._examples)):
      n_in, n_tgt = (len(x) for x in self._examples[i])
      for r in open_ids:
        if room[r][0] >= n_in and room[r][1] >= n_tgt:
          break
      else:
        rows.append([])
        room.append((self.max_len, self.max_len))
        open_ids.append(len(rows) - 1)
        if len(open_ids) > self.open_rows:
          open_ids.pop(0)
        r = open_ids[-1]
      rows[r].append(int(i))
      room[r] = (room[r][0] - n_in, room[r][1] - n_tgt)
    order = rng.permutation(len(rows))
    rows = [rows[j] for j in order]
    n = self.rows_per_batch
    self._epoch_cache = {epoch: [rows[s:s + n] for s in range(0, len(rows), n)]}
    return self._epoch_cache[epoch]

  def make_batch(self, rows) -> Batch:
    shape = (self.rows_per_batch, self.max_len)
    out = {k: np.zeros(shape, np.int32) for k in ("inp", "tgt", "iseg", "tseg")}
    for r, ids in enumerate(rows):
      pi = pt = 0
      for seg, i in enumerate(ids, start=1):
        inp, tgt = self._examples[i]
        out["inp"][r, pi:pi + len(inp)] = inp
        out["iseg"][r, pi:pi + len(inp)] = seg
        out["tgt"][r, pt:pt + len(tgt)] = tgt
        out["tseg"][r, pt:pt + len(tgt)] = seg
        pi, pt = pi + len(inp), pt + len(tgt)
    return Batch(out["inp"], out["tgt"], out["iseg"], out["tseg"])
