"""Targets, rules and sampling primitives on hand-made distributions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
