"""Finite-sample risk control: p-values for "mean loss ≤ ε" and Learn-then-Test.

Statistics only (numpy; no JAX, no models). `calibration.py` decodes and
measures the losses; this module turns n per-example losses per α into a set
of certified α. The procedure is Learn then Test (Angelopoulos, Bates, Candès,
Jordan and Lei, "Learn then Test: Calibrating Predictive Algorithms to Achieve
Risk Control", 2021) with fixed-sequence testing; docs/design.md §6.6 derives it.

For each α of a grid ordered from cautious to bold, the null hypothesis is

    H_α: R(α) = E[loss(α)] > ε        (losses in [0, 1])

and a valid p-value for it comes from the n calibration losses:
  - a loss declared binary ({0, 1}): the exact binomial tail P(Bin(n, ε) ≤ Σ losses);
  - losses in [0, 1]: the Hoeffding–Bentkus p-value of LTT,
        min( exp(-n·h(min(R̂, ε), ε)),  e·P(Bin(n, ε) ≤ ⌈n·R̂⌉) ),
        h(a, b) = a·log(a/b) + (1 - a)·log((1 - a)/(1 - b)).
Fixed-sequence testing rejects H_α along the order while p ≤ δ and stops at
the first p > δ; every rejected α then has R(α) ≤ ε simultaneously with
probability ≥ 1 − δ over the draw of the calibration set (family-wise error
control; no multiplicity correction is needed because the order is fixed
before the data are seen).

    p = hoeffding_bentkus_pvalue(mean_loss=0.01, n=500, epsilon=0.05)
    k = fixed_sequence([0.001, 0.02, 0.3, 0.01], delta=0.1)   # 2: the first two
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _check(n: int, epsilon: float) -> None:
  if int(n) != n or n < 1:
    raise ValueError(f"n (the number of calibration examples) must be a positive integer; "
                     f"got {n}")
  if not 0.0 < epsilon < 1.0:
    raise ValueError(f"epsilon must lie in (0, 1) for losses in [0, 1]; got {epsilon} "
                     "(divide a loss bounded by B, and its ε, by B)")


def binomial_cdf(k: int, n: int, p: float) -> float:
  """P(Bin(n, p) ≤ k), summed in log space (no scipy: it is a test dependency only)."""
  if k < 0:
    return 0.0
  if k >= n:
    return 1.0
  if p <= 0.0:
    return 1.0
  if p >= 1.0:
    return 0.0
  i = np.arange(int(k) + 1, dtype=np.float64)
  log_terms = (math.lgamma(n + 1) - np.array([math.lgamma(x + 1) for x in i])
               - np.array([math.lgamma(n - x + 1) for x in i])
               + i * math.log(p) + (n - i) * math.log1p(-p))
  top = log_terms.max()
  return float(min(1.0, math.exp(top) * np.exp(log_terms - top).sum()))


def binomial_pvalue(num_losses: int, n: int, epsilon: float) -> float:
  """Exact p-value of H: P(loss = 1) > ε from `num_losses` ones among n {0, 1} losses.

  Under H the count is stochastically at least Bin(n, ε), so
  P(count ≤ observed) ≤ P(Bin(n, ε) ≤ observed): a valid (super-uniform) p-value.
  """
  _check(n, epsilon)
  return binomial_cdf(int(num_losses), int(n), float(epsilon))


def _kl_bernoulli(a: float, b: float) -> float:
  """h(a, b) = KL(Bernoulli(a) ‖ Bernoulli(b)), with 0·log 0 = 0."""
  out = 0.0
  if a > 0.0:
    out += a * math.log(a / b)
  if a < 1.0:
    out += (1.0 - a) * math.log((1.0 - a) / (1.0 - b))
  return out


def hoeffding_pvalue(mean_loss: float, n: int, epsilon: float) -> float:
  """Hoeffding's (KL form) p-value of H: R > ε for n losses in [0, 1] with mean R̂:
  exp(-n·h(min(R̂, ε), ε)), from P(R̂ ≤ t) ≤ exp(-n·h(t, R)) for t ≤ R."""
  _check(n, epsilon)
  return math.exp(-n * _kl_bernoulli(min(float(mean_loss), epsilon), epsilon))


def bentkus_pvalue(mean_loss: float, n: int, epsilon: float) -> float:
  """Bentkus' p-value of H: R > ε for n losses in [0, 1] with mean R̂:
  e·P(Bin(n, ε) ≤ ⌈n·R̂⌉), capped at 1 (Bentkus 2004; LTT §3)."""
  _check(n, epsilon)
  # The rounding guard keeps n·R̂ = 3 (a sum of ones) from ceiling to 4.
  k = math.ceil(n * float(mean_loss) - 1e-9)
  return min(1.0, math.e * binomial_cdf(k, int(n), epsilon))


def hoeffding_bentkus_pvalue(mean_loss: float, n: int, epsilon: float) -> float:
  """LTT's Hoeffding–Bentkus p-value: the smaller of the two (both are valid)."""
  return min(hoeffding_pvalue(mean_loss, n, epsilon), bentkus_pvalue(mean_loss, n, epsilon))


def pvalue(losses: Sequence[float], epsilon: float, binary: bool = False) -> float:
  """The p-value of H: E[loss] > ε for per-example losses in [0, 1]:
  Hoeffding–Bentkus; with binary=True (a loss that only takes the values 0
  and 1, declared before seeing data, such as exact match) the exact binomial
  tail. Switching on the observed values instead would not be valid: a loss
  in [0, 1] can show only 0s and 1s in one sample with a mean of 1s below ε."""
  x = np.asarray(losses, np.float64)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f"losses must be a non-empty 1-D sequence; got shape {x.shape}")
  if np.isnan(x).any() or (x < 0).any() or (x > 1).any():
    bad = x[np.isnan(x) | (x < 0) | (x > 1)][0]
    raise ValueError(f"losses must lie in [0, 1]; got {bad} (divide a loss bounded by B "
                     "by B)")
  if binary:
    if not np.isin(x, (0.0, 1.0)).all():
      raise ValueError("binary=True needs losses that are all 0 or 1")
    return binomial_pvalue(int(x.sum()), x.size, epsilon)
  return hoeffding_bentkus_pvalue(float(x.mean()), x.size, epsilon)


def fixed_sequence(pvalues: Sequence[float], delta: float) -> int:
  """How many hypotheses fixed-sequence testing rejects: the length of the
  longest prefix (in the given order, cautious first) whose p-values are all
  ≤ δ. The family-wise error rate is at most δ."""
  if not 0.0 < delta < 1.0:
    raise ValueError(f"delta must lie in (0, 1); got {delta}")
  k = 0
  for p in pvalues:
    if not p <= delta:
      break
    k += 1
  return k


def min_examples(epsilon: float, delta: float) -> int:
  """The fewest calibration examples with which any α can be certified: at
  zero observed loss the smallest p-value is (1 − ε)^n (Hoeffding and the
  binomial tail agree there), so n ≥ log δ / log(1 − ε)."""
  _check(1, epsilon)
  if not 0.0 < delta < 1.0:
    raise ValueError(f"delta must lie in (0, 1); got {delta}")
  return math.ceil(math.log(delta) / math.log1p(-epsilon) - 1e-12)


def certify(losses: np.ndarray, epsilon: float, delta: float,
            binary: bool = False) -> tuple[np.ndarray, int]:
  """Learn then Test on a loss matrix.

  losses: [A, n] float, in [0, 1]: row a holds the n calibration losses at the
    a-th α of a grid ordered from cautious to bold.
  binary: the loss only takes the values 0 and 1 (`pvalue`).
  Returns (p-values [A], k): the first k α are certified, R(α) ≤ ε for all of
  them at once with probability ≥ 1 − δ.
  """
  x = np.asarray(losses, np.float64)
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"losses must be [num_alphas, num_examples]; got shape {x.shape}")
  p = np.array([pvalue(row, epsilon, binary) for row in x])
  return p, fixed_sequence(p, delta)
