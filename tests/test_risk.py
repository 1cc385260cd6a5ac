"""evaluation/risk.py: the p-values against scipy's binomial law and their
closed forms, their validity under the null by simulation, and the
fixed-sequence stopping rule. Pure numpy, no JAX."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from spec_cascade_jax.evaluation import risk


@pytest.mark.parametrize("k,n,p", [(0, 10, 0.1), (3, 10, 0.3), (7, 50, 0.05), (40, 100, 0.5),
                                   (250, 2000, 0.1), (9, 10, 0.99)])
def test_binomial_cdf_matches_scipy(k, n, p):
  np.testing.assert_allclose(risk.binomial_cdf(k, n, p), stats.binom.cdf(k, n, p),
                             rtol=1e-10, atol=1e-300)


def test_binomial_cdf_edges():
  assert risk.binomial_cdf(-1, 10, 0.3) == 0.0
  assert risk.binomial_cdf(10, 10, 0.3) == 1.0
  assert risk.binomial_cdf(0, 10, 0.0) == 1.0


def test_binomial_pvalue_is_the_binomial_tail():
  # 2 losses among 100 at ε = 0.05: P(Bin(100, 0.05) ≤ 2) = 0.1183...
  np.testing.assert_allclose(risk.binomial_pvalue(2, 100, 0.05), 0.11826, atol=1e-5)
  np.testing.assert_allclose(risk.binomial_pvalue(2, 100, 0.05),
                             stats.binom.cdf(2, 100, 0.05), rtol=1e-10)


def test_hoeffding_closed_form():
  n, eps, mean = 200, 0.1, 0.04
  h = mean * math.log(mean / eps) + (1 - mean) * math.log((1 - mean) / (1 - eps))
  np.testing.assert_allclose(risk.hoeffding_pvalue(mean, n, eps), math.exp(-n * h), rtol=1e-12)
  # At zero loss h(0, ε) = -log(1 - ε): p = (1 - ε)^n.
  np.testing.assert_allclose(risk.hoeffding_pvalue(0.0, n, eps), (1 - eps) ** n, rtol=1e-12)
  # A mean at or above ε is no evidence: p = 1.
  assert risk.hoeffding_pvalue(0.1, n, eps) == 1.0
  assert risk.hoeffding_pvalue(0.3, n, eps) == 1.0


def test_bentkus_and_the_combination():
  n, eps, mean = 200, 0.1, 0.0525   # n·R̂ = 10.5 -> ⌈⌉ = 11
  expected_b = min(1.0, math.e * stats.binom.cdf(11, n, eps))
  np.testing.assert_allclose(risk.bentkus_pvalue(mean, n, eps), expected_b, rtol=1e-10)
  # n·R̂ an integer stays itself (no rounding up by floating error).
  np.testing.assert_allclose(risk.bentkus_pvalue(0.015, 200, eps),
                             math.e * stats.binom.cdf(3, 200, eps), rtol=1e-10)
  hb = risk.hoeffding_bentkus_pvalue(mean, n, eps)
  assert hb == min(risk.bentkus_pvalue(mean, n, eps), risk.hoeffding_pvalue(mean, n, eps))
  assert hb < risk.hoeffding_pvalue(mean, n, eps)   # here Bentkus is the sharper


def test_pvalue_takes_the_exact_tail_only_for_a_declared_binary_loss():
  x = np.array([0.0] * 97 + [1.0] * 3)
  assert risk.pvalue(x, 0.1, binary=True) == risk.binomial_pvalue(3, 100, 0.1)
  # Not declared binary: Hoeffding–Bentkus, even on a sample of 0s and 1s.
  assert risk.pvalue(x, 0.1) == risk.hoeffding_bentkus_pvalue(0.03, 100, 0.1)
  assert risk.pvalue(x, 0.1) > risk.pvalue(x, 0.1, binary=True)
  with pytest.raises(ValueError, match="binary"):
    risk.pvalue([0.0, 0.5], 0.1, binary=True)


@pytest.mark.parametrize("bad", [[], [0.2, 1.5], [-0.1], [np.nan]])
def test_pvalue_rejects_losses_outside_the_unit_interval(bad):
  with pytest.raises(ValueError):
    risk.pvalue(bad, 0.1)


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.5, 2.0])
def test_epsilon_must_be_inside_the_unit_interval(eps):
  with pytest.raises(ValueError, match="epsilon"):
    risk.hoeffding_bentkus_pvalue(0.0, 10, eps)


@pytest.mark.parametrize("kind", ["bernoulli", "beta"])
def test_pvalues_are_valid_under_the_null(kind):
  """At true mean exactly ε (the least favourable null), P(p ≤ δ) ≤ δ: the
  rejection count over S draws stays below the binomial quantile of δ."""
  rng = np.random.default_rng(0)
  n, eps, delta, draws = 60, 0.2, 0.1, 1500
  if kind == "bernoulli":
    samples = (rng.random((draws, n)) < eps).astype(np.float64)
  else:   # mean a / (a + b) = ε, spread over [0, 1]
    samples = rng.beta(1.0, 4.0, size=(draws, n))
  rejections = sum(risk.pvalue(s, eps, binary=kind == "bernoulli") <= delta for s in samples)
  # The count is at most Bin(draws, δ) in law; its 0.999 quantile is the bound.
  assert rejections <= stats.binom.ppf(0.999, draws, delta), rejections


def test_fixed_sequence_stops_at_the_first_large_pvalue():
  assert risk.fixed_sequence([0.01, 0.05, 0.2, 0.01], delta=0.1) == 2
  assert risk.fixed_sequence([0.5, 0.01, 0.01], delta=0.1) == 0
  assert risk.fixed_sequence([0.01, 0.02, 0.03], delta=0.1) == 3
  assert risk.fixed_sequence([0.1, 0.1000001], delta=0.1) == 1   # p = δ is a rejection
  assert risk.fixed_sequence([0.01, float("nan"), 0.01], delta=0.1) == 1
  assert risk.fixed_sequence([], delta=0.1) == 0
  with pytest.raises(ValueError, match="delta"):
    risk.fixed_sequence([0.01], delta=1.0)


def test_certify_runs_the_sequence_over_rows():
  # Three α, cautious first: zero loss, small loss, large loss, zero loss.
  n = 100
  losses = np.zeros((4, n))
  losses[1, :2] = 1.0
  losses[2, :] = 0.5
  p, k = risk.certify(losses, epsilon=0.1, delta=0.1)
  assert k == 2 and p[1] == risk.hoeffding_bentkus_pvalue(0.02, n, 0.1)
  losses[2, :] = 1.0   # a binary loss, declared: the exact tails
  p, k = risk.certify(losses, epsilon=0.1, delta=0.1, binary=True)
  assert k == 2   # the last row's p is small, but the sequence stopped at row 2
  np.testing.assert_allclose(p[0], stats.binom.cdf(0, n, 0.1), rtol=1e-10)
  np.testing.assert_allclose(p[1], stats.binom.cdf(2, n, 0.1), rtol=1e-10)
  assert p[2] == 1.0 and p[3] < 0.1


@pytest.mark.parametrize("eps,delta", [(0.02, 0.1), (0.05, 0.1), (0.01, 0.05)])
def test_min_examples_is_the_least_n_that_can_certify(eps, delta):
  n = risk.min_examples(eps, delta)
  for binary in (False, True):   # at zero loss both p-values are (1 − ε)^n
    assert risk.pvalue(np.zeros(n), eps, binary) <= delta
    assert risk.pvalue(np.zeros(n - 1), eps, binary) > delta
