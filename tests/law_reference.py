"""An independent float64 numpy reference of every target (docs/design.md §2).

It does not import the library: the rules are written again here, from
the tables of docs/design.md §2, so a test that compares the library against it compares
two implementations. Used by the Monte Carlo tests (test_sampling_exact.py),
the greedy-law tests (test_greedy_law.py) and the unit tests of targets.py.

Conventions: q, p are the drafter's / verifier's distributions after
temperature and truncation (one-hot at the argmax at T = 0); q0, p0 the same
models unscaled (T = 1, no truncation). Every deferral DECISION reads q0, p0;
every target MIXES q and p.
"""

from __future__ import annotations

import numpy as np

EOS = 1


def softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def one_hot(i, size):
  out = np.zeros(size)
  out[i] = 1.0
  return out


class Margins:
  """Collects |statistic − threshold| of every deferral decision taken."""

  def __init__(self):
    self.values = []

  def less(self, lhs, rhs):
    self.values.append(abs(lhs - rhs))
    return lhs < rhs

  def smallest(self):
    return min(self.values) if self.values else np.inf


def decision(kind, q, p, q0, p0, a, m: Margins):
  """Whether a rule of the chow / diff / opt / bild family defers at one position."""
  if kind == "chow":
    return m.less(q0.max(), 1 - a)
  if kind == "diff":
    return m.less(q0.max(), p0.max() - a)
  if kind == "opt":
    return m.less(q0.max(), p0.max() - a * np.maximum(q - p, 0).sum())  # TV on q, p
  if kind == "bild":
    return not m.less(np.exp(-a), p0[np.argmax(q0)])  # -log p°(argmax q°) > a
  raise ValueError(kind)


def keep_set(kind, q0, p0, a, m: Margins):
  """The token rules' keep set A as a float mask [V]."""
  size = len(q0)
  if kind == "token_v1":
    keep = [not m.less(q0[v], p0.max() - a) for v in range(size)]
  elif kind == "token_v2":
    keep = [not m.less(p0[v], p0.max() - a) for v in range(size)]
  elif kind == "token_v3":
    keep = [not m.less(p0[v], (1 - a) * p0.max()) for v in range(size)]
  else:
    raise ValueError(kind)
  return np.array(keep, float)


def target(kind, q, p, q0, p0, a, m: Margins):
  """π at one position [V]."""
  if kind in ("chow", "diff", "opt", "bild"):
    return p if decision(kind, q, p, q0, p0, a, m) else q
  if kind.startswith("token_"):
    keep = keep_set(kind, q0, p0, a, m)
    return q * keep + p * (1 - (q * keep).sum())
  if kind == "lossy":
    # Leviathan et al. A.5 procedure, marginalised: draft x ~ q, accept with
    # min(1, p/((1-a) q)), else resample from norm(max(0, p - q)).
    with np.errstate(divide="ignore", invalid="ignore"):
      acc = np.where(q > 0, np.minimum(1.0, p / ((1 - a) * q)), 1.0)
    res = np.maximum(p - q, 0)
    res = res / res.sum() if res.sum() > 0 else p
    return q * acc + (q * (1 - acc)).sum() * res
  return {"speculative": p, "verifier": p, "drafter": q}[kind]


def deferred(kind, x, q, p, q0, p0, a, m: Margins):
  """Whether the drafter proposing token x at this position counts as a deferral."""
  if kind in ("chow", "diff", "opt", "bild"):
    return decision(kind, q, p, q0, p0, a, m)
  if kind.startswith("token_"):
    return keep_set(kind, q0, p0, a, m)[x] == 0
  return kind in ("speculative", "verifier")


# ------------------------------------------------------------- greedy (T = 0)


def _greedy_position(kind, dq, dp, prev, a, m):
  """(argmax π, drafter's argmax x, x deferred) at the context `prev` of bigram tables."""
  size = dq.shape[1]
  q0, p0 = softmax(dq[prev]), softmax(dp[prev])
  x = int(np.argmax(dq[prev]))
  q, p = one_hot(x, size), one_hot(int(np.argmax(dp[prev])), size)
  pi = target(kind, q, p, q0, p0, a, m)
  assert np.isclose(pi.max(), 1.0), (kind, pi)  # every greedy target is one-hot
  return int(np.argmax(pi)), x, deferred(kind, x, q, p, q0, p0, a, m)


def greedy_chain(kind, dq, dp, a, max_new, m: Margins):
  """Token by token: y_t = argmax π_t at the context y_{t-1} (start token 0).

  Returns (tokens [max_new] with 0 after EOS, the positions t (tokens
  committed before it) at which the drafter's proposal counted as deferred).
  """
  out, deferrals, prev = [], [], 0
  while len(out) < max_new and EOS not in out:
    y, _, d = _greedy_position(kind, dq, dp, prev, a, m)
    if d:
      deferrals.append(len(out))
    out.append(y)
    prev = y
  return np.array(out + [0] * (max_new - len(out))), deferrals


def greedy_rounds(kind, dq, dp, a, gamma, max_new, m: Margins, policy="constant",
                  threshold=None, schedule=None):
  """GenSpecSample's rounds at T = 0, written out: the drafter drafts along its
  own argmax path; the leading run of drafts equal to argmax π is accepted;
  the first mismatch (or the bonus position) emits argmax π.

  How many tokens a round drafts (the draft policies): "constant" γ;
  "confidence" stops before a draft whose context has max softmax(dq[ctx]) <
  threshold (at most γ); "cumulative" where the product of those maxima over
  the draft so far is below threshold; "heuristic" drafts L, L starting at schedule[0] and
  moving to min(L + schedule[1], γ) after a round that accepted all its drafts,
  max(L - schedule[2], 1) otherwise.

  Returns (tokens [max_new], rounds, accepted drafts that were committed,
  drafts proposed), summed over rounds.
  """
  out, rounds, accepted, drafted, prev = [], 0, 0, 0, 0
  length = schedule[0] if policy == "heuristic" else gamma
  while len(out) < max_new and EOS not in out:
    rounds += 1
    drafts, ctx, conf = [], prev, 1.0
    for _ in range(length):
      top = softmax(dq[ctx]).max()
      conf = conf * top if policy == "cumulative" else top
      if policy in ("confidence", "cumulative") and m.less(conf, threshold):
        break
      ctx = int(np.argmax(dq[ctx]))
      drafts.append(ctx)
    d = len(drafts)
    contexts = [prev] + drafts
    n = 0
    while n < d and drafts[n] == _greedy_position(kind, dq, dp, contexts[n], a, m)[0]:
      n += 1
    committed = 0
    for y in drafts[:n] + [_greedy_position(kind, dq, dp, contexts[n], a, m)[0]]:
      out.append(y)
      committed += 1
      if y == EOS or len(out) == max_new:
        break
    accepted += min(n, committed)
    drafted += d
    if policy == "heuristic":
      length = min(length + schedule[1], gamma) if n == d else max(length - schedule[2], 1)
    prev = out[-1]
  return np.array(out + [0] * (max_new - len(out))), rounds, accepted, drafted


def token_cascade_calls(tokens, deferred_positions, chunk):
  """Sequential verifier calls of a token cascade that catches up in chunks.

  The verifier has consumed decoder positions < vlen; to score position t + 1
  (t tokens committed) it must consume positions 0..t, `chunk` per call.
  """
  vlen, calls = 0, 0
  for t in deferred_positions:
    while vlen <= t:
      vlen = min(vlen + chunk, t + 1)
      calls += 1
  return calls


def greedy_seq_cascade(dq, dp, a, max_new, confidence, m: Margins):
  """The drafter's greedy output, or the verifier's where its confidence
  (mean or min over its tokens, EOS included, of max q°) is below 1 − α.

  Returns (tokens, deferred).
  """
  ys, _ = greedy_chain("drafter", dq, dp, 0.0, max_new, Margins())
  n = list(ys).index(EOS) + 1 if EOS in ys else max_new
  contexts = [0] + [int(t) for t in ys[:n - 1]]
  confs = [softmax(dq[c]).max() for c in contexts]
  conf = np.mean(confs) if confidence == "mean" else np.min(confs)
  if m.less(conf, 1 - a):
    return greedy_chain("verifier", dq, dp, 0.0, max_new, Margins())[0], True
  return ys, False
