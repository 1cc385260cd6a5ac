"""The latency protocol of docs/design.md §6.1: paired, interleaved, with a spread.

A method's latency is measured per example at batch 1 (the paper's setting),
PAIRED with verifier-only decoding of the same example and interleaved in
time: for each example, `repeats` rounds of (method, verifier), the order
alternating from round to round. Drift of the machine's speed (other load, CPU
frequency) then hits both sides of a pair alike and cancels in their ratio,
which one verifier timing at the start of a run, divided into every later
point, does not. Compile time is excluded: each input shape is decoded once,
untimed, by both before any timing.

Python's garbage collector is off while a point is timed (one collection
before it), as `timeit` does: a collection landing inside one timed call
would charge one side of a pair for the whole process's garbage. (A
collection per example instead cost the main job minutes: each one walks
the whole heap of a process holding jax and its compilations.)

Per example the median of the repeats is kept. The point's relative latency
is Σ method / Σ verifier over the examples, and its spread is a bootstrap
interval over examples (resampling whole pairs), beside the interquartile
range of the per-example ratios.

Probes: other programs (the step-cost programs of evaluation/step_costs.py)
may be timed among the pairs, once per example after its repeats, so that
they meet the same load as the decodes they price; each probe's first call
is left out of the timing (compilation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class PairedTimes:
  """Median seconds per example [n] of the method and of the verifier;
  probe_s: {probe key: seconds of each of its timed calls} (module docstring)."""
  method_s: np.ndarray
  verifier_s: np.ndarray
  probe_s: dict = dataclasses.field(default_factory=dict)

  def summary(self, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
              seed: int = 0) -> dict:
    """The record fields of one point (see the module docstring)."""
    ratio, lo, hi = ratio_interval(self.method_s, self.verifier_s, confidence, resamples,
                                   seed)
    per_example = self.method_s / self.verifier_s
    return {"latency_s": float(np.mean(self.method_s)),
            "verifier_latency_s": float(np.mean(self.verifier_s)),
            "relative_latency": ratio,
            "relative_latency_interval": [lo, hi],
            "relative_latency_confidence": confidence,
            "example_ratio_quartiles": [float(np.percentile(per_example, 25)),
                                        float(np.percentile(per_example, 75))],
            "latency_examples_s": {"method": [round(float(x), 6) for x in self.method_s],
                                   "verifier": [round(float(x), 6) for x in self.verifier_s]}}


def paired_times(decode_method: Callable[[Any], object],
                 decode_verifier: Callable[[Any], object],
                 inputs: Sequence[Any], repeats: int = 3,
                 compile_key: Callable[[Any], Hashable] = lambda ids: ids.shape,
                 probes: Sequence[Mapping[Hashable, Callable[[], object]]] | None = None
                 ) -> PairedTimes:
  """Times both decoders on each input, interleaved (module docstring).

  An input is what the callables take: an [1, S] array, or anything else
  with a `compile_key` (default: the array's shape) that is equal for inputs
  of one compilation, whose first use is left out of the timing. Each
  callable must block until its result is ready (generate() does: it
  returns numpy arrays). With `decode_verifier` None the method IS the
  verifier: each timing of it is paired with the next one of the same call.
  probes: None, or one {key: callable that blocks} per input, each timed once
  after that input's repeats (PairedTimes.probe_s).
  """
  if not len(inputs):
    raise ValueError("no inputs to time; pass at least one example.")
  if probes is not None and len(probes) != len(inputs):
    raise ValueError(f"probes: one mapping per input; got {len(probes)} for "
                     f"{len(inputs)} inputs.")
  timer = Interleaved(decode_method, decode_verifier, repeats, compile_key)
  with gc_paused():
    timed = [timer.time(ids, probes[i] if probes is not None else None)
             for i, ids in enumerate(inputs)]
  return collect(timed)


class Interleaved:
  """`paired_times` one input at a time, so that a caller can interleave many
  pairs (the sweep times every point's pairs of one example in turn) and save
  each input's timings as it goes. It remembers which compile keys and probes
  have been run (their first use is left out of the timing)."""

  def __init__(self, decode_method: Callable[[Any], object],
               decode_verifier: Callable[[Any], object] | None, repeats: int = 3,
               compile_key: Callable[[Any], Hashable] = lambda ids: ids.shape):
    if repeats < 1:
      raise ValueError(f"repeats must be >= 1; got {repeats}.")
    self.method, self.verifier_or_none = decode_method, decode_verifier
    self.repeats, self.compile_key = repeats, compile_key
    self._compiled: set[Hashable] = set()
    self._probed: set[Hashable] = set()

  def time(self, ids, probes: Mapping[Hashable, Callable[[], object]] | None = None
           ) -> tuple[float, float, dict]:
    """(median method seconds, median verifier seconds, {probe key: seconds})."""
    verifier = self.verifier_or_none or self.method
    if self.compile_key(ids) not in self._compiled:
      self.method(ids)  # compile, excluded from the timing
      if self.verifier_or_none is not None:
        self.verifier_or_none(ids)
      self._compiled.add(self.compile_key(ids))
    times = {"m": [], "v": []}
    for r in range(self.repeats):
      for side in (("m", "v") if r % 2 == 0 else ("v", "m")):
        fn = self.method if side == "m" else verifier
        t0 = time.perf_counter()
        fn(ids)
        times[side].append(time.perf_counter() - t0)
    probe_s = {}
    for key, fn in (probes or {}).items():
      if key not in self._probed:
        fn()  # compile, excluded from the timing
        self._probed.add(key)
      t0 = time.perf_counter()
      fn()
      probe_s[key] = time.perf_counter() - t0
    return float(np.median(times["m"])), float(np.median(times["v"])), probe_s


def collect(timed: Sequence[tuple[float, float, Mapping]]) -> PairedTimes:
  """PairedTimes from `Interleaved.time`'s results, one per input in order."""
  probe_s: dict[Hashable, list[float]] = {}
  for _, _, probes in timed:
    for key, seconds in probes.items():
      probe_s.setdefault(key, []).append(seconds)
  return PairedTimes(np.array([t[0] for t in timed], np.float64),
                     np.array([t[1] for t in timed], np.float64), probe_s)


@contextlib.contextmanager
def gc_paused():
  """Python's garbage collector off (one collection first), as `timeit` does
  (module docstring)."""
  gc.collect()
  gc.disable()
  try:
    yield
  finally:
    gc.enable()


def ratio_interval(method_s, verifier_s, confidence: float = CONFIDENCE,
                   resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
  """(Σm / Σv, low, high): a percentile bootstrap interval over examples."""
  m, v = np.asarray(method_s, np.float64), np.asarray(verifier_s, np.float64)
  if m.shape != v.shape or m.ndim != 1 or not len(m):
    raise ValueError(f"need two equal-length 1-D timing arrays; got {m.shape}, {v.shape}.")
  ratio = float(m.sum() / v.sum())
  idx = np.random.default_rng(seed).integers(0, len(m), size=(resamples, len(m)))
  boot = m[idx].sum(axis=1) / v[idx].sum(axis=1)
  tail = 100.0 * (1.0 - confidence) / 2.0
  return ratio, float(np.percentile(boot, tail)), float(np.percentile(boot, 100.0 - tail))



def machine() -> dict:
  """Where a timing was taken: backend, device kind, CPU count, OS."""
  import os
  import platform

  import jax
  return {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
          "cpus": os.cpu_count(), "platform": platform.platform(terse=True)}


def describe_machine(m: dict | None) -> str:
  """A few words for a title: 'cpu, 2 cores' or 'gpu (NVIDIA H200)'."""
  if not m:
    return "machine not recorded"
  if m.get("backend") == "cpu":
    return f"cpu, {m.get('cpus')} cores"
  return f"{m.get('backend')} ({m.get('device')})"
