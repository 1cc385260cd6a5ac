"""Targets, rules and sampling primitives on hand-made distributions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import law_reference as ref

from spec_cascade_jax.decoding import sampling, targets

Q = np.array([[0.5, 0.3, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]], np.float32)
P = np.array([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1]], np.float32)


def _t(fn, q=Q, p=P, q0=Q, p0=P, alpha=0.0):
  pi, defer = fn(jnp.asarray(q), jnp.asarray(p), jnp.asarray(q0), jnp.asarray(p0),
                 jnp.asarray(alpha, jnp.float32))
  return np.asarray(pi), np.asarray(defer)


def test_chow_decisions_and_extremes():
  # max q° = [.5, .25]: α = .6 -> threshold .4: row 0 keeps q, row 1 defers.
  pi, defer = _t(targets.chow, alpha=np.array([0.6, 0.6]))
  np.testing.assert_array_equal(pi, np.stack([Q[0], P[1]]))
  np.testing.assert_array_equal(defer[:, 0], [False, True])
  np.testing.assert_array_equal(_t(targets.chow, alpha=0.0)[0], P)   # always defers
  np.testing.assert_array_equal(_t(targets.chow, alpha=1.0)[0], Q)   # never


def test_diff_and_opt():
  # diff: max q° < max p° − α: row 0 .5 < .6 − α, row 1 .25 < .7 − α.
  pi, _ = _t(targets.diff, alpha=np.array([0.05, 0.5]))
  np.testing.assert_array_equal(pi, np.stack([P[0], Q[1]]))
  # opt: TV(row 0) = .4 + .1 = .5, TV(row 1) = .15·3 = .45.
  # α = .3: row 0: .5 < .6 − .15 = .45? no; row 1: .25 < .7 − .135 = .565? yes.
  pi, defer = _t(targets.opt, alpha=0.3)
  np.testing.assert_array_equal(pi, np.stack([Q[0], P[1]]))
  np.testing.assert_array_equal(defer[:, 0], [False, True])


def test_token_rules_sets():
  # token_v3, α = .5, row 0: A = {v : p°(v) ≥ .3} = {2}; Σ_A q = .1
  pi, defer = _t(targets.token_v3, alpha=0.5)
  np.testing.assert_allclose(pi[0], [0, 0, 0.1, 0] + 0.9 * P[0], atol=1e-6)
  np.testing.assert_array_equal(defer[0], [True, True, False, True])
  # token_v2, α = .45, row 0: A = {v : p° ≥ .15} = {1, 2}; Σ_A q = .4
  pi, _ = _t(targets.token_v2, alpha=0.45)
  np.testing.assert_allclose(pi[0], [0, 0.3, 0.1, 0] + 0.6 * P[0], atol=1e-6)
  # token_v1, α = .3, row 0: A = {v : q° ≥ .3} = {0, 1}; Σ_A q = .8
  pi, _ = _t(targets.token_v1, alpha=0.3)
  np.testing.assert_allclose(pi[0], [0.5, 0.3, 0, 0] + 0.2 * P[0], atol=1e-6)
  for fn in (targets.token_v1, targets.token_v2, targets.token_v3):
    for a in (0.0, 0.3, 1.0):
      np.testing.assert_allclose(_t(fn, alpha=a)[0].sum(-1), 1.0, atol=1e-6)
  # α = 1 keeps every token: the drafter.
  np.testing.assert_allclose(_t(targets.token_v3, alpha=1.0)[0], Q, atol=1e-7)


def test_lossy_is_leviathan_a5():
  """GenSpecSample on the lossy π reproduces A.5's acceptance and residual."""
  for a in (0.0, 0.3, 0.8):
    pi, _ = _t(targets.lossy, alpha=a)
    np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.minimum(1, pi / Q), np.minimum(1, P / ((1 - a) * Q)),
                               atol=1e-6)
    res = np.asarray(targets.residual(jnp.asarray(pi), jnp.asarray(Q)))
    want = np.maximum(P - Q, 0) / np.maximum(P - Q, 0).sum(-1, keepdims=True)
    rejects = (Q * (1 - np.minimum(1, pi / Q))).sum(-1) > 1e-6  # residual used at all
    assert rejects[0] == (a < 0.8)  # at α = .8 row 0 accepts every draft
    np.testing.assert_allclose(res[rejects], want[rejects], atol=1e-6)
  np.testing.assert_allclose(_t(targets.lossy, alpha=0.0)[0], P, atol=1e-6)  # lossless


def test_bild():
  # argmax q° = [0, 0]; -log p°(0) = [2.30, 0.36]; α = 1: row 0 defers, row 1 not.
  pi, defer = _t(targets.bild, alpha=1.0)
  np.testing.assert_array_equal(pi, np.stack([P[0], Q[1]]))
  np.testing.assert_array_equal(defer[:, 0], [True, False])


def test_residual_without_mass_has_no_nans():
  res = np.asarray(targets.residual(jnp.asarray(Q), jnp.asarray(Q)))
  assert np.all(np.isfinite(res))
  np.testing.assert_allclose(res, Q)
  # One-hot π == q (greedy agreement): still finite.
  onehot = jnp.eye(4)[jnp.array([2, 3])]
  assert np.all(np.isfinite(np.asarray(targets.residual(onehot, onehot))))


def test_opt_tv_uses_the_scaled_distributions():
  """opt decides on max q°, max p° but takes TV on the scaled q, p (at T = 0 one-hot).

  Row 0: q = δ0, p = δ2, TV = 1: .5 < .75 − .3 = .45? no -> keep the drafter
  (TV on q°, p° would be .65: .5 < .555 -> defer). Row 1: q = p = δ0, TV = 0:
  .5 < .75? yes -> defer (TV on q°, p° = .3: .5 < .66 too, so row 1 pins the
  decision on q°, p°: on the scaled q, p it would read 1 < 1 -> keep).
  """
  q0 = np.array([[0.5, 0.3, 0.1, 0.1], [0.5, 0.2, 0.2, 0.1]], np.float32)
  p0 = np.array([[0.1, 0.1, 0.75, 0.05], [0.75, 0.05, 0.1, 0.1]], np.float32)
  q, p = np.eye(4, dtype=np.float32)[[0, 0]], np.eye(4, dtype=np.float32)[[2, 0]]
  pi, defer = _t(targets.opt, q=q, p=p, q0=q0, p0=p0, alpha=0.3)
  np.testing.assert_array_equal(pi, np.stack([q[0], p[1]]))
  np.testing.assert_array_equal(defer[:, 0], [False, True])


SCALED_RULES = {"chow": (0.0, 1.0), "diff": (-0.5, 0.5), "opt": (0.0, 1.5),
                "token_v1": (0.0, 0.6), "token_v2": (0.0, 0.6), "token_v3": (0.0, 1.0),
                "bild": (0.0, 3.0), "lossy": (0.0, 0.9)}


def _scaled(x0, temp, top_k):
  """x0 at temperature `temp`, truncated to its top_k tokens (numpy, float64)."""
  x = x0 ** (1.0 / temp)
  cut = np.sort(x, axis=-1)[:, -top_k][:, None]
  x = np.where(x >= cut, x, 0.0)
  return x / x.sum(-1, keepdims=True)


@pytest.mark.parametrize("rule", sorted(SCALED_RULES))
def test_every_row_decides_on_unscaled_and_mixes_scaled(rule):
  """64 rows with q ≠ q° and p ≠ p° (T = 0.5, top-3), one α per row, against the
  float64 reference of law_reference.py, on every row and every token."""
  rs = np.random.RandomState(sorted(SCALED_RULES).index(rule))
  rows, size = 64, 6
  q0 = np.array([ref.softmax(r) for r in 1.5 * rs.randn(rows, size)])
  p0 = np.array([ref.softmax(r) for r in 1.5 * rs.randn(rows, size)])
  q, p = _scaled(q0, 0.5, 3), _scaled(p0, 0.5, 3)
  alpha = rs.uniform(*SCALED_RULES[rule], rows)
  fn = targets.RULE_TARGETS.get(rule) or targets.METHOD_TARGETS[rule]
  pi, defer = _t(fn, q=q.astype(np.float32), p=p.astype(np.float32),
                 q0=q0.astype(np.float32), p0=p0.astype(np.float32),
                 alpha=alpha.astype(np.float32))
  checked = mixed_differs = 0
  for b in range(rows):
    m = ref.Margins()
    want = ref.target(rule, q[b], p[b], q0[b], p0[b], alpha[b], m)
    want_defer = [ref.deferred(rule, v, q[b], p[b], q0[b], p0[b], alpha[b], m)
                  for v in range(size)]
    if m.smallest() < 1e-5:
      continue  # float32 could take the other side of this decision
    checked += 1
    np.testing.assert_allclose(pi[b], want, atol=1e-5, err_msg=f"{rule} row {b}")
    np.testing.assert_array_equal(defer[b], want_defer, err_msg=f"{rule} row {b}")
    # Would a rule that decided on the scaled q, p have given another π here?
    other = ref.target(rule, q[b], p[b], q[b], p[b], alpha[b], ref.Margins())
    mixed_differs += not np.allclose(other, want, atol=1e-4)
  assert checked >= 60
  if rule != "lossy":  # lossy has no decision on q°, p°
    assert mixed_differs > 0, "the rows do not separate scaled from unscaled"


def test_get_target_unknown_rule():
  with pytest.raises(ValueError, match="valid rules"):
    targets.get_target("spec_cascade", "chowx")


# ------------------------------------------------------------- sampling


def test_probs_greedy_per_row_and_ties():
  logits = jnp.array([[1.0, 3.0, 3.0, 0.0], [1.0, 3.0, 3.0, 0.0]])
  pr = np.asarray(sampling.probs_from_logits(logits, jnp.array([0.0, 1.0])))
  np.testing.assert_array_equal(pr[0], [0, 1, 0, 0])  # first index on ties
  np.testing.assert_allclose(pr[1], jax.nn.softmax(logits[1]), rtol=1e-6)


def test_probs_temperature_top_k_top_p():
  logits = jnp.log(jnp.array([[0.4, 0.3, 0.2, 0.1]]))
  pr = np.asarray(sampling.probs_from_logits(logits, 0.5))
  want = np.array([0.4, 0.3, 0.2, 0.1]) ** 2
  np.testing.assert_allclose(pr[0], want / want.sum(), rtol=1e-5)
  pr = np.asarray(sampling.probs_from_logits(logits, 1.0, top_k=2))
  np.testing.assert_allclose(pr[0], [4 / 7, 3 / 7, 0, 0], rtol=1e-5)
  # top_p = .75: .4 + .3 < .75, so .2 is needed; mass .9.
  pr = np.asarray(sampling.probs_from_logits(logits, 1.0, top_p=0.75))
  np.testing.assert_allclose(pr[0], [4 / 9, 3 / 9, 2 / 9, 0], rtol=1e-5)
  pr = np.asarray(sampling.probs_from_logits(logits, 1.0, top_p=0.7))
  np.testing.assert_allclose(pr[0], [4 / 7, 3 / 7, 0, 0], rtol=1e-5)
  # Per-row top_p on [B, k, V]: row 1 untouched.
  two = jnp.broadcast_to(logits, (2, 3, 4))
  pr = np.asarray(sampling.probs_from_logits(two, jnp.ones(2)[:, None],
                                             top_p=jnp.array([0.7, 1.0])[:, None]))
  np.testing.assert_allclose(pr[0, 2], [4 / 7, 3 / 7, 0, 0], rtol=1e-5)
  np.testing.assert_allclose(pr[1, 2], [0.4, 0.3, 0.2, 0.1], rtol=1e-5)


def test_sample_inverse_cdf_is_exact_on_a_grid():
  """Stratified uniforms u = (i + ½)/n give counts n·π exactly (to rounding)."""
  probs = jnp.array([0.0, 0.25, 0.0, 0.5, 0.25, 0.0])
  n = 4000
  u = (jnp.arange(n) + 0.5) / n
  idx = np.asarray(sampling.sample(u, jnp.broadcast_to(probs, (n, 6))))
  np.testing.assert_array_equal(np.bincount(idx, minlength=6), [0, 1000, 0, 2000, 1000, 0])
  # Never a zero-probability token, even at u -> 1.
  assert int(sampling.sample(jnp.array(1.0 - 2 ** -24), probs)) == 4
  assert int(sampling.sample(jnp.array(0.0), probs)) == 1
