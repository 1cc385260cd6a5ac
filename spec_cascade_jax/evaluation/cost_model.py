"""Where a decode's time goes: its latency predicted from step costs and counts.

Leviathan et al. (2023, §3.4) predict the speed-up of speculative decoding
from the acceptance rate and the cost of a drafter step relative to a
verifier step, taking a verifier chunk of γ+1 tokens to cost one step. On a
CPU it does not (a 6-token chunk of the bundled verifier costs 2.5 steps), so
here every model call is priced by the cost measured on the machine at hand
(`StepCosts`, measured by evaluation/step_costs.py), and the number of calls
comes from a decode's own statistics (decoding/loop.py `Stats`), which do not
depend on the machine:

  speculative kernel  encode_d + encode_v + drafter_steps·c_d
                      + rounds·c(w),  w = verified_tokens / rounds where the
                      stats count the tokens the verifier scored, else γ+1;
                      with measured round costs R(w) (w drafter steps and a
                      chunk of w, timed in the kernel's order; batch 1):
                      encode_d + encode_v + rounds·R(w)
  prompt lookup       encode_v + (draft_tokens/γ)·c(γ+1) + the other rounds·c(1)
  token_cascade       encode_d + encode_v + drafter_steps·c_d
                      + sequential_verifier_calls·c(γ+1)   (catch-up chunks);
                      with round costs, a catch-up chunk, which follows the
                      drafter's steps as a round's chunk does, costs what
                      the chunk costs in a round: R(γ+1) − (γ+1)·c_d
  oracle_cascade,     encode_d + encode_v + drafter_steps·c_d
  seq_cascade           + sequential_verifier_calls·c(1)
  verifier            encode_v + num_tokens·c(1)
  drafter             encode_d + num_tokens·c_d

c(k) is the verifier's call on a chunk of k tokens, c(1) its one-token step,
c_d the drafter's one-token step; between measured widths c is linear.

Beyond its model calls a decode spends the loop's own work (`LoopCost`,
measured by evaluation/loop_costs.py with free models): a fixed cost per
decode (validation, dispatch, the results back) and a cost per loop
iteration (`loop_iterations`: a round of the kernel or of prompt lookup, a
token of the one-token loops; seq_cascade runs two such loops, the drafter's
and the deferred rows' verifier's). Given a LoopCost, a prediction adds

  loop                fixed + iterations·per_iteration   (per example)

A method's predicted relative latency is its predicted seconds over the
verifier-only prediction on the same examples (Σ over examples, as the
latency protocol's ratio), each side with its own LoopCost. Where the
measured ratio exceeds the predicted one, the decode spends time the model
does not see.

Pure arithmetic: nothing here times anything or imports jax.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Hashable, Mapping, Sequence

import numpy as np

from spec_cascade_jax.decoding import methods


@dataclasses.dataclass(frozen=True)
class StepCosts:
  """Seconds per model call at batch 1, as a decode loop runs them.

  encode_drafter / encode_verifier: each model's set-up for the inputs (T5:
  the encoder and the cross-attention cache; a decoder-only LM: the prompt's
  prefill). drafter_step: one drafter token. verifier_chunk: {k: seconds of a
  verifier call on k tokens}; k = 1 (the one-token step) must be there, other
  widths may be sparse (the cost between two measured widths is linear).
  round_cost: {k: seconds of a speculative round's model calls at batch 1, k
  drafter steps then one verifier chunk of k tokens, timed in that order as
  the kernel runs them}, or None: such a round is then priced k·drafter_step
  + c(k). Timed together, each model's call follows the other's, whose
  weights and cache have just passed through the processor's caches, which can
  cost more than the same calls timed apart (BENCHMARKS.md, "Where the time
  goes").
  """
  encode_drafter: float
  encode_verifier: float
  drafter_step: float
  verifier_chunk: Mapping[int, float]
  round_cost: Mapping[int, float] | None = None

  def __post_init__(self):
    if self.round_cost is not None:
      rc = {int(k): float(v) for k, v in dict(self.round_cost).items()}
      if not rc or min(rc) < 1 or not all(math.isfinite(v) and v >= 0 for v in rc.values()):
        raise ValueError(f"round_cost: {{width >= 1: seconds >= 0}}; got {self.round_cost}.")
      object.__setattr__(self, "round_cost", dict(sorted(rc.items())))
    chunk = {int(k): float(v) for k, v in dict(self.verifier_chunk).items()}
    if 1 not in chunk:
      raise ValueError(f"verifier_chunk needs the one-token step (k = 1); got widths "
                       f"{sorted(chunk)}.")
    if min(chunk) < 1:
      raise ValueError(f"chunk widths are >= 1; got {sorted(chunk)}.")
    values = [self.encode_drafter, self.encode_verifier, self.drafter_step, *chunk.values()]
    if not all(math.isfinite(v) and v >= 0 for v in values):
      raise ValueError(f"step costs are finite seconds >= 0; got {self}.")
    object.__setattr__(self, "verifier_chunk", dict(sorted(chunk.items())))

  @property
  def verifier_step(self) -> float:
    """c(1): the verifier's one-token step."""
    return self.verifier_chunk[1]

  @property
  def max_chunk(self) -> int:
    """The widest chunk measured: widths beyond it are not predicted."""
    return max(self.verifier_chunk)

  def chunk(self, width: float) -> float:
    """c(width): the measured cost, linear between measured widths."""
    widths = list(self.verifier_chunk)
    if not 1 <= width <= widths[-1]:
      raise ValueError(f"chunk width {width:g} is outside the measured widths "
                       f"[1, {widths[-1]}]; measure wider chunks.")
    return float(np.interp(width, widths, list(self.verifier_chunk.values())))

  def round(self, width: float) -> float:
    """A speculative round of `width` drafter steps and a verifier chunk of
    `width` tokens (batch 1): round_cost, linear between measured widths, or
    width·drafter_step + c(width) without it."""
    if self.round_cost is None:
      return width * self.drafter_step + self.chunk(width)
    widths = list(self.round_cost)
    if not widths[0] <= width <= widths[-1]:
      raise ValueError(f"round width {width:g} is outside the measured widths "
                       f"[{widths[0]}, {widths[-1]}]; measure wider rounds.")
    return float(np.interp(width, widths, list(self.round_cost.values())))

  def chunk_after_drafter(self, width: float) -> float:
    """A verifier chunk of `width` tokens right after `width` drafter steps
    (token_cascade's catch-up): round(width) − width·drafter_step, never below
    c(width), with round costs; c(width) without them."""
    if self.round_cost is None:
      return self.chunk(width)
    return max(self.round(width) - width * self.drafter_step, self.chunk(width))

  def to_dict(self) -> dict:
    """JSON-ready (widths as string keys); `from_dict` reads it back."""
    out = {"encode_drafter": self.encode_drafter, "encode_verifier": self.encode_verifier,
           "drafter_step": self.drafter_step,
           "verifier_chunk": {str(k): v for k, v in self.verifier_chunk.items()}}
    if self.round_cost is not None:
      out["round_cost"] = {str(k): v for k, v in self.round_cost.items()}
    return out

  @classmethod
  def from_dict(cls, d: Mapping) -> "StepCosts":
    rc = d.get("round_cost")
    return cls(encode_drafter=float(d["encode_drafter"]),
               encode_verifier=float(d["encode_verifier"]),
               drafter_step=float(d["drafter_step"]),
               verifier_chunk={int(k): float(v) for k, v in d["verifier_chunk"].items()},
               round_cost=None if rc is None else {int(k): float(v) for k, v in rc.items()})


@dataclasses.dataclass(frozen=True)
class LoopCost:
  """Seconds a decode loop spends beyond its model calls at batch 1 (module
  docstring): `fixed` per decode, `per_iteration` per loop iteration."""
  fixed: float
  per_iteration: float

  def __post_init__(self):
    if not all(math.isfinite(v) and v >= 0 for v in (self.fixed, self.per_iteration)):
      raise ValueError(f"loop costs are finite seconds >= 0; got {self}.")

  def to_dict(self) -> dict:
    return {"fixed": self.fixed, "per_iteration": self.per_iteration}

  @classmethod
  def from_dict(cls, d: Mapping) -> "LoopCost":
    return cls(fixed=float(d["fixed"]), per_iteration=float(d["per_iteration"]))


def loop_iterations(method: str, stats: Mapping) -> np.ndarray:
  """Per example, the iterations of `method`'s decode loop (module docstring):
  rounds for the speculative kernel and prompt lookup, tokens for one-model
  decoding, drafter steps (one a token) for token_cascade and oracle_cascade,
  drafter steps plus the deferred rows' verifier steps for seq_cascade."""
  loop = methods.get(method).loop
  if loop in ("kernel", "lookup"):
    return _per_example(stats, "rounds")
  if loop == "single":
    return _per_example(stats, "num_tokens")
  steps = _per_example(stats, "drafter_steps")
  return steps + _per_example(stats, "rounds") if loop == "seq_cascade" else steps


@dataclasses.dataclass(frozen=True)
class Prediction:
  """Predicted seconds summed over the examples, and where they go:
  parts = {encode_drafter, encode_verifier, drafter_steps, verifier_calls,
  loop}."""
  seconds: float
  parts: dict[str, float]
  num_examples: int


def _per_example(stats: Mapping, name: str) -> np.ndarray:
  if name not in stats:
    raise KeyError(f"the cost model needs the stat {name!r}; got {sorted(stats)}.")
  return np.atleast_1d(np.asarray(stats[name], np.float64))


def predict(method: str, stats: Mapping, costs: StepCosts,
            num_draft_tokens: int | None = None, loop: LoopCost | None = None) -> Prediction:
  """Predicted seconds of decoding with `method` (module docstring).

  stats: `generate`'s stats of batch-1 decodes, each a scalar (one example)
  or an array with one entry per example; num_draft_tokens: γ of the drafting
  methods and token_cascade (whose catch-up chunk is γ+1); loop: the loop's
  own work (None: model calls only, parts["loop"] = 0).
  """
  spec = methods.get(method)
  n = len(_per_example(stats, "num_tokens"))
  gamma = None
  if spec.uses_num_draft_tokens:
    if num_draft_tokens is None or num_draft_tokens < 1:
      raise ValueError(f"method {method!r} needs its num_draft_tokens (γ >= 1); got "
                       f"{num_draft_tokens!r}.")
    gamma = int(num_draft_tokens)
  parts = {"encode_drafter": n * costs.encode_drafter if spec.uses_drafter else 0.0,
           "encode_verifier": n * costs.encode_verifier if spec.uses_verifier else 0.0,
           "drafter_steps": 0.0, "verifier_calls": 0.0,
           "loop": (0.0 if loop is None else
                    n * loop.fixed + loop_iterations(method, stats).sum() * loop.per_iteration)}
  if spec.loop == "single":
    tokens = _per_example(stats, "num_tokens").sum()
    if method == "drafter":
      parts["drafter_steps"] = tokens * costs.drafter_step
    else:
      parts["verifier_calls"] = tokens * costs.verifier_step
  elif spec.loop == "kernel":
    # A round's width: the tokens the verifier scored, verified_tokens / rounds
    # (γ+1 without that stat). At batch 1 a row drafting d tokens makes d + 1
    # drafter steps and has a chunk of d + 1 scored.
    rounds = _per_example(stats, "rounds")
    width = (np.where(rounds > 0, _per_example(stats, "verified_tokens") / np.maximum(rounds, 1),
                      1.0) if "verified_tokens" in stats else np.full(rounds.shape, gamma + 1.0))
    if costs.round_cost is None:
      parts["drafter_steps"] = _per_example(stats, "drafter_steps").sum() * costs.drafter_step
      parts["verifier_calls"] = float(sum(r * costs.chunk(w) for r, w in zip(rounds, width)))
    else:
      # Batch-1 rounds priced whole (StepCosts.round_cost), their seconds split
      # between the two models in the proportion of their calls timed apart.
      for r, w in zip(rounds, width):
        drafter, chunk = w * costs.drafter_step, costs.chunk(w)
        share = drafter / (drafter + chunk) if drafter + chunk > 0 else 0.0
        parts["drafter_steps"] += r * costs.round(w) * share
        parts["verifier_calls"] += r * costs.round(w) * (1.0 - share)
  elif spec.loop == "lookup":
    rounds = _per_example(stats, "rounds").sum()
    chunk_rounds = _per_example(stats, "draft_tokens").sum() / gamma
    parts["verifier_calls"] = (chunk_rounds * costs.chunk(gamma + 1)
                               + (rounds - chunk_rounds) * costs.verifier_step)
  else:  # the sequential baselines: their verifier calls are counted one by one
    parts["drafter_steps"] = _per_example(stats, "drafter_steps").sum() * costs.drafter_step
    calls = _per_example(stats, "sequential_verifier_calls").sum()
    if spec.loop == "token_cascade":
      parts["verifier_calls"] = calls * costs.chunk_after_drafter(gamma + 1)
    else:
      parts["verifier_calls"] = calls * costs.verifier_step
  parts = {k: float(v) for k, v in parts.items()}
  return Prediction(seconds=sum(parts.values()), parts=parts, num_examples=n)


def total_seconds(method: str, stats: Mapping,
                  costs: StepCosts | Mapping[Hashable, StepCosts],
                  num_draft_tokens: int | None = None,
                  groups: Sequence[Hashable] | None = None,
                  loop: LoopCost | None = None) -> float:
  """Predicted seconds of `method`'s decodes, summed over the examples.

  groups: one key per example (its input length bucket, say) into `costs`,
  a {key: StepCosts} mapping, where the examples' shapes differ; None: one
  StepCosts for every example. loop: as in `predict` (one for every
  example: the loop's work does not depend on the input's length)."""
  n = len(_per_example(stats, "num_tokens"))
  if groups is None:
    costs, groups = {None: costs}, [None] * n
  groups = list(groups)
  total = 0.0
  for key in dict.fromkeys(groups):
    idx = np.array([i for i, g in enumerate(groups) if g == key])
    total += predict(method, _select(stats, idx, len(groups)), costs[key],
                     num_draft_tokens, loop).seconds
  return total


def relative_latency(method: str, stats: Mapping, verifier_stats: Mapping,
                     costs: StepCosts | Mapping[Hashable, StepCosts],
                     num_draft_tokens: int | None = None,
                     groups: Sequence[Hashable] | None = None,
                     loop: LoopCost | None = None,
                     verifier_loop: LoopCost | None = None) -> float:
  """Predicted Σ method seconds / Σ verifier-only seconds over the same
  examples (`verifier_stats`: verifier-only decodes of them); costs and
  groups as in `total_seconds`; loop / verifier_loop: each side's own work
  (None: model calls only)."""
  n, n_v = (len(_per_example(x, "num_tokens")) for x in (stats, verifier_stats))
  if n != n_v:
    raise ValueError(f"{n} examples of {method!r} against {n_v} of the verifier: predict "
                     "the same examples.")
  return (total_seconds(method, stats, costs, num_draft_tokens, groups, loop)
          / total_seconds("verifier", verifier_stats, costs, None, groups, verifier_loop))


def _select(stats: Mapping, idx: np.ndarray, n: int) -> dict:
  """The examples `idx` of per-example stats of `n` examples."""
  out = {}
  for k, x in stats.items():
    arr = np.atleast_1d(np.asarray(x))
    if len(arr) != n:
      raise ValueError(f"stat {k!r} has {len(arr)} examples, the grouping {n}: predict "
                       "the same examples.")
    out[k] = arr[idx]
  return out


def fastest(candidates: Mapping[Hashable, tuple[str, Mapping, int | None]],
            verifier_stats: Mapping, costs: StepCosts) -> tuple[Hashable, dict]:
  """The candidate with the least predicted relative latency.

  candidates: {key: (method, stats, num_draft_tokens)}, e.g. one per γ or per
  policy threshold, each decoded on the examples of `verifier_stats`.
  Returns (best key, {key: predicted relative latency}).
  """
  if not candidates:
    raise ValueError("no candidates to choose from.")
  rel = {k: relative_latency(m, s, verifier_stats, costs, g)
         for k, (m, s, g) in candidates.items()}
  return min(rel, key=rel.get), rel


def expected_tokens_per_round(acceptance: float, num_draft_tokens: int) -> float:
  """Leviathan et al.'s E[tokens per round] = (1 − a^{γ+1}) / (1 − a) for
  drafts accepted independently with probability a (γ+1 at a = 1)."""
  if not 0.0 <= acceptance <= 1.0:
    raise ValueError(f"acceptance rate is in [0, 1]; got {acceptance!r}.")
  g = int(num_draft_tokens)
  if acceptance == 1.0:
    return float(g + 1)
  return (1.0 - acceptance ** (g + 1)) / (1.0 - acceptance)


def speculative_speedup(acceptance: float, num_draft_tokens: int, costs: StepCosts,
                        mean_tokens: float | None = None, loop: LoopCost | None = None,
                        verifier_loop: LoopCost | None = None) -> float:
  """Predicted speed-up over verifier-only decoding of a speculative round of
  γ+1 drafter steps and one verifier chunk of γ+1 (the kernel's), at
  acceptance rate a. mean_tokens: the output length, to count the encoders
  and each decode's fixed loop cost (None: the steady state, both left out).
  loop / verifier_loop: each side's own work (None: none, as in `predict`)."""
  none = LoopCost(fixed=0.0, per_iteration=0.0)
  loop, verifier_loop = loop or none, verifier_loop or none
  g = int(num_draft_tokens)
  per_round = costs.round(g + 1) + loop.per_iteration
  per_token = costs.verifier_step + verifier_loop.per_iteration
  tokens_per_round = expected_tokens_per_round(acceptance, g)
  if mean_tokens is None:
    return tokens_per_round * per_token / per_round
  spec = (costs.encode_drafter + costs.encode_verifier + loop.fixed
          + mean_tokens / tokens_per_round * per_round)
  return (costs.encode_verifier + verifier_loop.fixed + mean_tokens * per_token) / spec


def best_num_draft_tokens(acceptance: float, costs: StepCosts,
                          candidates: Sequence[int] | None = None,
                          mean_tokens: float | None = None, loop: LoopCost | None = None,
                          verifier_loop: LoopCost | None = None
                          ) -> tuple[int, dict[int, float]]:
  """The γ with the largest `speculative_speedup` at acceptance rate a among
  `candidates` (default every γ whose chunk γ+1 was measured).
  Returns (γ, {γ: predicted speed-up})."""
  gammas = list(candidates) if candidates is not None else list(range(1, costs.max_chunk))
  if not gammas:
    raise ValueError(f"no γ to choose from: chunks are measured up to {costs.max_chunk} "
                     "tokens, and γ needs a chunk of γ+1.")
  speed = {g: speculative_speedup(acceptance, g, costs, mean_tokens, loop, verifier_loop)
           for g in gammas}
  return max(speed, key=speed.get), speed
