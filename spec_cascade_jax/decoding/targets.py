"""Deferral rules and per-position targets π (docs/design.md §2).

Every target is one pure, vectorised function

    pi, defer = target(q, p, q0, p0, alpha)

with
  q, p:   [..., V] float32  drafter / verifier distributions AFTER temperature,
          top-k and top-p (one-hot at the argmax when temperature == 0);
  q0, p0: [..., V] float32  the same models UNSCALED (temperature 1, no
          truncation); deferral DECISIONS use these, the target MIXES q and p;
  alpha:  float32 broadcastable against q.shape[:-1] (per-row arrays: pass
          [B, 1] for [B, k, V] inputs);
  pi:     [..., V] float32  the target distribution at this position;
  defer:  [..., V] bool     defer[..., v] says whether the drafter proposing
          token v at this position counts as a deferral to the verifier.

What a "deferral" is, per target (the kernels count `defer[x]` at the drafter's
sample x of every committed position, so every method counts the same event):
  chow / diff / opt / bild: the rule's decision r (same for every v);
  token_v1/v2/v3:           v is outside the keep set A (the drafter's token is
                            replaced by a verifier sample in a token cascade);
  speculative, verifier:    always (π = p);
  drafter, lossy:           never (no rule hands over; lossy SD has no rule).

α ranges (validated by `api.generate`; see ALPHA_RANGES):
  chow [0, 1]:      α = 0 defers wherever max q° < 1 (verifier); α = 1 never (drafter).
  diff [-1, 1]:     α = -1 always defers; α = 1 never.
  opt [0, inf):     α = 0 is diff at 0; large α never defers (TV ≤ 1).
  token_v* [0, 1]:  α = 0 keeps only the verifier's argmax tokens (v2, v3) or
                    tokens with q° ≥ max p° (v1); α = 1 keeps everything (drafter).
  lossy [0, 1):     α = 0 is lossless SD; α → 1 accepts every draft.
  bild [0, inf):    threshold on the verifier's negative log-likelihood.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from spec_cascade_jax.decoding.methods import ALPHA_RANGES, RULES  # noqa: F401  (re-exported)

TargetFn = Callable[..., tuple[jnp.ndarray, jnp.ndarray]]


def _alpha(alpha, q):
  """α broadcastable over q.shape[:-1] -> [..., 1] float32."""
  return jnp.asarray(alpha, jnp.float32)[..., None]


def _mix(q, p, r):
  """π = (1 - r) q + r p for a boolean decision r [...]."""
  return jnp.where(r[..., None], p, q), jnp.broadcast_to(r[..., None], q.shape)


def _maxp(x):
  return jnp.max(x, axis=-1, keepdims=True)


def chow_defer(q0, alpha):
  """Chow's rule: defer iff max q° < 1 - α.  q0 [..., V] -> [...] bool."""
  return _maxp(q0)[..., 0] < 1.0 - _alpha(alpha, q0)[..., 0]


def chow(q, p, q0, p0, alpha):
  return _mix(q, p, chow_defer(q0, alpha))


def diff(q, p, q0, p0, alpha):
  """Defer iff max q° < max p° - α."""
  r = _maxp(q0) < _maxp(p0) - _alpha(alpha, q)
  return _mix(q, p, r[..., 0])


def opt(q, p, q0, p0, alpha):
  """Defer iff max q° < max p° - α·TV(p, q); TV on the SCALED q, p."""
  tv = jnp.sum(jnp.maximum(q - p, 0.0), axis=-1, keepdims=True)
  r = _maxp(q0) < _maxp(p0) - _alpha(alpha, q) * tv
  return _mix(q, p, r[..., 0])


def _token(q, p, keep):
  """π(v) = q(v)·1[v ∈ A] + p(v)·(1 - Σ_{u∈A} q(u)); A given as keep [..., V]."""
  q_kept = jnp.where(keep, q, 0.0)
  # Clip: Σ_A q can exceed 1 by a rounding error.
  rest = jnp.clip(1.0 - jnp.sum(q_kept, axis=-1, keepdims=True), 0.0, 1.0)
  return q_kept + p * rest, ~keep


def token_v1(q, p, q0, p0, alpha):
  """A = {v : q°(v) ≥ max p° - α}."""
  return _token(q, p, q0 >= _maxp(p0) - _alpha(alpha, q))


def token_v2(q, p, q0, p0, alpha):
  """A = {v : p°(v) ≥ max p° - α}."""
  return _token(q, p, p0 >= _maxp(p0) - _alpha(alpha, q))


def token_v3(q, p, q0, p0, alpha):
  """A = {v : p°(v) ≥ (1 - α)·max p°}."""
  return _token(q, p, p0 >= (1.0 - _alpha(alpha, q)) * _maxp(p0))


def speculative(q, p, q0, p0, alpha):
  """Lossless speculative decoding: π = p."""
  return p, jnp.ones(q.shape, bool)


def verifier(q, p, q0, p0, alpha):
  return p, jnp.ones(q.shape, bool)


def drafter(q, p, q0, p0, alpha):
  return q, jnp.zeros(q.shape, bool)


def normalize(x, fallback):
  """x / Σx over the last axis; `fallback` where Σx == 0 (no NaNs, no 0/0)."""
  s = jnp.sum(x, axis=-1, keepdims=True)
  return jnp.where(s > 0, x / jnp.where(s > 0, s, 1.0), fallback)


def lossy(q, p, q0, p0, alpha):
  """Lossy SD (Leviathan et al. 2023, A.5, β = 1) as a target.

  π = m + (1 - Σm)·norm(max(0, p - q)),  m = min(q, p / (1 - α)).

  GenSpecSample on this π IS A.5's procedure:
  - acceptance: where q(x) > p(x), max(0, p - q)(x) = 0 so π(x) = m(x) and
    π(x)/q(x) = min(1, p(x)/((1-α) q(x))); where p(x) ≥ q(x), m(x) = q(x)
    (p/(1-α) ≥ p ≥ q) so π(x) ≥ q(x): accepted, and A.5's
    min(1, p/((1-α)q)) is 1 there too;
  - residual: max(0, π - q) is 0 where q > p and (1 - Σm)·norm(max(0, p - q))
    where p ≥ q, so norm(max(0, π - q)) = norm(max(0, p - q)), A.5's residual.
  When p == q the residual mass is 0: then Σm = 1 and π = q.
  """
  a = _alpha(alpha, q)
  m = jnp.minimum(q, p / (1.0 - a))
  resid = normalize(jnp.maximum(p - q, 0.0), p)
  rest = jnp.clip(1.0 - jnp.sum(m, axis=-1, keepdims=True), 0.0, 1.0)
  return m + rest * resid, jnp.zeros(q.shape, bool)


def bild_defer(q0, p0, alpha):
  """BiLD*: defer iff -log p°(argmax q°) > α.  -> [...] bool."""
  top = jnp.argmax(q0, axis=-1)[..., None]
  p_top = jnp.take_along_axis(p0, top, axis=-1)[..., 0]
  # -log p > α  <=>  p < exp(-α); avoids log(0).
  return p_top < jnp.exp(-_alpha(alpha, q0)[..., 0])


def bild(q, p, q0, p0, alpha):
  """π = q if -log p°(argmax q°) ≤ α else p."""
  return _mix(q, p, bild_defer(q0, p0, alpha))


RULE_TARGETS: dict[str, TargetFn] = {
    "chow": chow, "diff": diff, "opt": opt,
    "token_v1": token_v1, "token_v2": token_v2, "token_v3": token_v3,
}

# Methods whose target does not depend on `rule`.
METHOD_TARGETS: dict[str, TargetFn] = {
    "speculative": speculative, "lossy": lossy, "bild": bild,
    "drafter": drafter, "verifier": verifier,
}


# Targets that never read q° and p° (their π and deferral come from q and p
# alone): the kernel does not compute the unscaled softmax for them
# (sampling.distributions(unscaled=False)), and a greedy batch then needs no
# softmax at all.
IGNORES_UNSCALED: frozenset[TargetFn] = frozenset({speculative, lossy, drafter, verifier})


def get_target(method: str, rule: str) -> TargetFn:
  """The per-position target of `method` (and `rule` for the cascades)."""
  if method in METHOD_TARGETS:
    return METHOD_TARGETS[method]
  if rule not in RULE_TARGETS:
    raise ValueError(f"Unknown rule {rule!r}; valid rules: {RULES}.")
  return RULE_TARGETS[rule]


def residual(pi, q):
  """norm(max(0, π - q)) [..., V]: the correction distribution after a rejection.

  Where π == q the rejection probability is 0, so what is returned there never
  gets sampled; π is returned to keep it a valid distribution without NaNs.
  """
  return normalize(jnp.maximum(pi - q, 0.0), pi)
