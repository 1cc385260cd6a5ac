"""High-power Monte Carlo law checks: every method, every draft policy.

test_sampling_exact.py checks many settings at N = 10,000 rows, which detects
a law at total-variation (TV) distance of about 0.015–0.02 from the reference.
Here one representative case per method and per draft policy runs with enough
rows to detect TV 0.005 with probability at least 0.95.

The power calculation (checked by `test_the_design_has_the_power` below).
The test is Pearson's chi-square over the k cells of the law of the first
MAX_NEW = 2 tokens (V = 6: at most 36 cells), at level P_MIN. If the decoder's
law o is at TV distance δ from the reference e, the statistic is noncentral
chi-square with k − 1 degrees of freedom and noncentrality

    λ = N Σ_i (o_i − e_i)² / e_i  ≥  N (Σ_i |o_i − e_i|)² / Σ_i e_i  =  4 N δ²

(Cauchy–Schwarz; Σ e_i = 1). The power grows with λ, so it is at least
P[χ'²(k − 1, 4Nδ²) > χ²_{1−P_MIN}(k − 1)]. With k − 1 ≤ 35, δ = 0.005 and
P_MIN = 1e-4 that is 0.987 at N = 800,000 (0.88 at 600,000): N = 800,000.
Cells with expected count below 5 are merged into one, of reference mass
e_R. Merging hides at most e_R of TV (inside the merged cell Σ|o_i − e_i| −
|o_R − e_R| ≤ 2 min(o_R, e_R)), so each case asserts the power against TV
δ − e_R on the cells tested.

γ = 2 and two tokens: the first round decides both positions, through its
first and second drafts, the residual at either, and, where a policy stops
after zero or one draft, the bonus position d + 1. ~3 s a case after a
compile (2-core CPU); slow tier.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.stats

from test_sampling_exact import (TABLES, _alpha_for, _models, chi_square_pvalue,
                                 policy_settings, ref_law)
from spec_cascade_jax.decoding import generate

pytestmark = pytest.mark.slow

N, MAX_NEW, GAMMA, P_MIN, TV, POWER = 800_000, 2, 2, 1e-4, 0.005, 0.95
INPUTS = jax.numpy.ones((N, 2), jax.numpy.int32)

KERNEL = [("speculative", None), ("lossy", None), ("bild", None)]
# Each kernel method under each policy (spec_cascade: another rule per policy),
# then the sequential methods, which draft nothing.
CASES = ([(m, r, p) for m, r in KERNEL for p in ("constant", "confidence", "heuristic")]
         + [("spec_cascade", "chow", "constant"), ("spec_cascade", "token_v3", "confidence"),
            ("spec_cascade", "opt", "heuristic"), ("spec_cascade", "diff", "cumulative"),
            ("token_cascade", "chow", None), ("oracle_cascade", "diff", None),
            ("drafter", None, None), ("verifier", None, None)])


def min_power(cells: int, n: int = N, tv: float = TV, level: float = P_MIN) -> float:
  """The least power of the chi-square test with `cells` cells against any
  law at TV distance `tv` (module docstring)."""
  crit = scipy.stats.chi2.isf(level, cells - 1)
  return float(scipy.stats.ncx2.sf(crit, cells - 1, 4 * n * tv ** 2))


def _decode(method, rule, policy, tables, seed):
  kind = rule or method
  a = _alpha_for(kind, tables)
  kw = {}
  if rule is not None:
    kw.update(rule=rule, alpha=a)
  elif method in ("lossy", "bild"):
    kw.update(alpha=a)
  if policy is not None:
    kw.update(policy_settings(policy, tables) or {"draft_policy": "constant"})
  res = generate(*_models(tables), INPUTS, method=method, num_draft_tokens=GAMMA,
                 temperature=1.0, max_new_tokens=MAX_NEW, rng=jax.random.PRNGKey(seed), **kw)
  law, margins = ref_law(kind, tables, a, 1.0, max_new=MAX_NEW)
  assert not margins.values or min(margins.values) > 1e-4, "near-tie"
  return res, law


@pytest.mark.parametrize("method,rule,policy", CASES)
def test_law_at_high_power(method, rule, policy):
  tables = TABLES["far"]
  res, law = _decode(method, rule, policy, tables, seed=len(method) + 7 * len(policy or ""))
  pval, cells = chi_square_pvalue(res.tokens, law, cells=True)
  merged = sum(pr for pr in law.values() if N * pr < 5)
  assert min_power(cells, tv=TV - merged) >= POWER, (cells, merged)
  assert pval > P_MIN, f"{method}[{rule}] policy={policy}: p={pval:.2e}"
  if policy != "constant" and policy:  # the policy did shorten drafts
    assert res.stats["draft_tokens"].sum() < GAMMA * res.stats["rounds"].sum()


def test_the_design_has_the_power():
  """The numbers of the module docstring, and a law at TV 0.005 is caught."""
  assert min_power(36) >= 0.98 and min_power(36, n=600_000) < POWER
  tables = TABLES["far"]
  res, law = _decode("spec_cascade", "token_v3", "confidence", tables, seed=3)
  assert chi_square_pvalue(res.tokens, law) > P_MIN
  # Move 0.005 of probability between the two likeliest outputs: TV 0.005.
  a, b = sorted(law, key=law.get)[-2:]
  wrong = dict(law)
  wrong[a] -= TV
  wrong[b] += TV
  assert chi_square_pvalue(res.tokens, wrong) < P_MIN
