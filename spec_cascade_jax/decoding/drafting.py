"""A round's draft: the drafter's steps, and how many tokens each row drafts.

`num_draft_tokens` (γ) is static: the most a row drafts in a round. A draft
policy (methods.DRAFT_POLICIES; static) decides, per row and round, how many
of them row b drafts, d_b ∈ [0, γ]; its settings are traced (DecodeParams),
so a sweep over them never recompiles.

  constant    d_b = γ every round (the default).
  confidence  row b stops before drafting x_{i+1} where the drafter's own top
              probability max q°_{i+1} (temperature 1, untruncated) is below
              draft_threshold[b]: d_b = the first such i, or γ.
  cumulative  the same with Π_{j ≤ i+1} max q°_j, the drafter's own estimate
              that the whole draft so far would be accepted: a draft goes on
              while its expected gain is worth a step.
  heuristic   row b drafts L_b tokens, L_b carried from round to round:
              L_b ← min(L_b + grow, γ) after a round that accepted all its
              drafts, max(L_b - shrink, 1) otherwise; L_b starts at `start`
              (draft_schedule[b] = (start, grow, shrink)). transformers'
              "heuristic" assistant schedule, per row.

Why the output law is unchanged (docs/design.md §3.1): a round's acceptance
test and correction give each committed position the law π_j given the
prefix, for ANY number d of drafts fixed before the verifier is consulted; a
row drafting d tokens needs q_1 .. q_{d+1} (the last one for the bonus
position), so it takes d + 1 drafter steps. d_b may depend on anything the
row has seen before the verifier's call of this round: the drafter's
distributions (confidence, cumulative) or the accept counts of past rounds (heuristic).
It never reads the verifier's scores of this round's drafts.

Cost: a row that stops drafting still rides through the batch's remaining
steps, but a step that no row needs is skipped (`lax.cond`), and the verifier
scores a chunk as wide as the batch's longest draft + 1 (`lax.switch` over
widths 1 .. γ+1: one compiled program holds every width). At batch 1 both
follow the row's own draft.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spec_cascade_jax.decoding import sampling
from spec_cascade_jax.decoding.loop import DecodeParams

# Drafts of up to this many drafter steps (γ + 1) are unrolled (see draft_all).
_UNROLL_MAX = 8


def _step(drafter, length, params: DecodeParams, top_k: int, all_greedy,
          unscaled: bool = True):
  """One drafter step: (cache, token, i, u) -> (cache, x_{i+1}, q_{i+1}, q°_{i+1}).

  unscaled (static): False where nothing reads q° (q0 is then None). Where
  every row is greedy (`all_greedy`, traced) one argmax gives both the token
  and the one-hot q, and the inverse CDF is skipped."""
  def greedy(logits, u):
    x = sampling.argmax(logits)
    return x, sampling.one_hot(x, logits.shape[-1]), (sampling.unscaled_probs(logits)
                                                      if unscaled else None)

  def general(logits, u):
    q, q0 = sampling.distributions(logits, params.temperature, top_k, params.top_p, unscaled)
    return sampling.sample(u, q), q, q0

  def one(cache, token, i, u):
    logits, cache = drafter.step(token[:, None], cache, length + i)
    x, q, q0 = jax.lax.cond(all_greedy, greedy, general, logits[:, 0].astype(jnp.float32), u)
    return cache, x, q, q0
  return one


def _stack(outs):
  """[(x, q, q0)] per step -> x [B, n], q, q0 [B, n, V] (q0 None where unread)."""
  x, q, q0 = zip(*outs)
  return (jnp.stack(x, axis=1), jnp.stack(q, axis=1),
          None if q0[0] is None else jnp.stack(q0, axis=1))


def draft_all(drafter, cache, last, length, u_draft, params: DecodeParams, top_k: int,
              all_greedy, unscaled: bool = True):
  """γ+1 drafter steps for every row (policy "constant").

  u_draft [B, γ+1] -> x [B, γ+1], q, q0 [B, γ+1, V], cache. Up to
  `_UNROLL_MAX` steps are unrolled in Python (γ is static): XLA:CPU runs a
  `lax.scan` as a nested while loop with its own per-iteration bookkeeping and
  stacks the outputs step-major ([γ+1, B, V], then a transpose); unrolled, the
  distributions are written batch-major directly. Longer drafts keep the scan
  so the compile time stays bounded. unscaled (static): False where nothing
  reads q° (q0 is then None).
  """
  one = _step(drafter, length, params, top_k, all_greedy, unscaled)
  steps = u_draft.shape[1]
  if steps <= _UNROLL_MAX:
    token, outs = last, []
    for i in range(steps):
      cache, token, q, q0 = one(cache, token, i, u_draft[:, i])
      outs.append((token, q, q0))
    return (*_stack(outs), cache)

  def body(carry, xs):
    cache, token = carry
    cache, token, q, q0 = one(cache, token, *xs)
    return (cache, token), (token, q, q0)

  (cache, _), (x, q, q0) = jax.lax.scan(body, (cache, last),
                                        (jnp.arange(steps), u_draft.T))
  # scan stacks on axis 0: [γ+1, B, ...] -> [B, γ+1, ...]
  return (jnp.moveaxis(x, 0, 1), jnp.moveaxis(q, 0, 1),
          None if q0 is None else jnp.moveaxis(q0, 0, 1), cache)


def draft_adaptive(drafter, cache, last, length, u_draft, params: DecodeParams, top_k: int,
                   all_greedy, limit, threshold=None, cumulative: bool = False,
                   unscaled: bool = True):
  """Drafts up to limit[b] tokens per row, stopping early where `threshold`
  says (module docstring).

  Args:
    limit: [B] int32 in [0, γ]: the most row b drafts (0 for rows not decoding).
    threshold: [B] float32 or None: stop before x_{i+1} where max q°_{i+1} < it,
      or (`cumulative`, static) where Π_{j ≤ i+1} max q°_j < it.
    unscaled: static; False where nothing reads q° (q0 is then None; a
      threshold reads it).
  Returns:
    x [B, γ+1], q, q0 [B, γ+1, V], cache, d [B] int32: row b drafted
    x_1 .. x_{d_b} and its q_1 .. q_{d_b+1} are the drafter's (entries past
    d_b + 1 are placeholders, never read); the cache holds slots through
    length + d_b.
  """
  one = _step(drafter, length, params, top_k, all_greedy, unscaled or threshold is not None)
  steps = u_draft.shape[1]
  gamma = steps - 1
  cache, token, q, q0 = one(cache, last, 0, u_draft[:, 0])   # every row needs q_1
  outs = [(token, q, q0)]
  going = limit > 0                                            # x_1 is drafted
  conf = jnp.ones(going.shape, jnp.float32)

  def confident(conf, q0):
    top = jnp.max(q0, axis=-1)
    conf = conf * top if cumulative else top
    return conf, conf >= threshold

  if threshold is not None:
    conf, ok = confident(conf, q0)
    going = going & ok
  d = going.astype(jnp.int32)
  for i in range(1, steps):
    # Step i feeds x_i: it runs where some row drafted x_i.
    cache, token, q, q0 = jax.lax.cond(
        jnp.any(going),
        lambda c, t, i=i: one(c, t, i, u_draft[:, i]),
        lambda c, t: (c, t, outs[-1][1], outs[-1][2]),
        cache, token)
    outs.append((token, q, q0))
    if i < gamma:
      going = going & (limit > i)
      if threshold is not None:
        conf, ok = confident(conf, q0)
        going = going & ok
      d = d + going.astype(jnp.int32)
  return (*_stack(outs), cache, d)


def verify_chunk(verifier, chunk, cache, length, width=None):
  """The verifier's scores of chunk [B, γ+1] at `length` -> (logits [B, γ+1, V], cache).

  width: None scores the whole chunk; a [] int32 in [1, γ+1] scores its first
  `width` tokens only (one `lax.switch` branch per width) and pads the logits
  with zeros (placeholders past the width, never read).
  """
  if width is None:
    return verifier.step(chunk, cache, length)
  full = chunk.shape[1]

  def branch(k):
    def score(chunk, cache):
      logits, cache = verifier.step(chunk[:, :k], cache, length)
      return jnp.pad(logits, ((0, 0), (0, full - k), (0, 0))), cache
    return score

  return jax.lax.switch(width - 1, [branch(k) for k in range(1, full + 1)], chunk, cache)


def limits(policy: str, gamma: int, draft_len, active):
  """[B] int32: the most each row drafts this round (0 for rows not decoding)."""
  cap = draft_len if policy == "heuristic" else jnp.full_like(draft_len, gamma)
  return jnp.where(active, cap, 0)


def next_length(draft_len, d, n, schedule, gamma: int, active):
  """The heuristic schedule's update: L + grow after a fully accepted draft
  (n == d), L - shrink otherwise, within [1, γ]; rows not decoding keep L."""
  grow, shrink = schedule[:, 1], schedule[:, 2]
  new = jnp.where(n >= d, jnp.minimum(draft_len + grow, gamma),
                  jnp.maximum(draft_len - shrink, 1))
  return jnp.where(active, new, draft_len).astype(jnp.int32)
