"""Monte Carlo exactness of every decoding method (docs/design.md §3.5).

Bigram drafter/verifier pairs (V = 6, EOS = 1 reachable) make the exact law of
the first three generated tokens a finite product of per-position targets.
That law is computed here in float64 numpy by an INDEPENDENT reference
(law_reference.py; it does not import targets.py), and the empirical law of N = 10000 rows decoded in
one batch is compared to it with a chi-square test.

Threshold: p > 1e-4 per test. About 130 comparisons run, so even with fresh
seeds the chance of any false alarm is ~1.3%; the seeds are fixed, so the
suite is deterministic. Real bugs (a wrong residual, an off-by-one acceptance,
a target that ignores α) give p-values far below 1e-10 at this N.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import law_reference as ref

from spec_cascade_jax.decoding import generate
from spec_cascade_jax.testing import BigramModel

pytestmark = pytest.mark.slow  # Monte Carlo: 10000 rows per law (the fast tier leaves it out)

V, EOS, N, MAX_NEW = 6, 1, 10000, 3
P_MIN = 1e-4
MARGIN = 1e-4  # decisions closer than this to their threshold could flip in float32


def _tables():
  """Two (drafter, verifier) logit-table pairs: mildly and strongly disagreeing."""
  rs = np.random.RandomState(7)
  ver = 1.5 * rs.randn(V, V)
  ver[:, EOS] += np.linspace(-1.0, 1.0, V)           # EOS likely after some tokens
  near = 0.6 * ver + 1.0 * rs.randn(V, V)            # a noisy copy
  far = 1.5 * rs.randn(V, V) - 1.2 * ver             # prefers what p dislikes
  return {"near": (near, ver), "far": (far, ver)}


TABLES = _tables()

# ------------------------------------------------------------- numpy reference


_softmax = ref.softmax


def _probs(logits, temp):
  if temp == 0:
    return ref.one_hot(np.argmax(logits), V)
  return _softmax(logits / temp)


def ref_law(kind, tables, a, temp, max_new=MAX_NEW):
  """{(y1, .., y_max_new): probability} of the first max_new tokens, EOS absorbing."""
  dq, dp = tables
  m = ref.Margins()
  law = {}

  def rec(prefix, prob, prev):
    if len(prefix) == max_new:
      law[tuple(prefix)] = law.get(tuple(prefix), 0.0) + prob
      return
    if EOS in prefix:
      rec(prefix + [0], prob, 0)
      return
    q, p = _probs(dq[prev], temp), _probs(dp[prev], temp)
    pi = ref.target(kind, q, p, _softmax(dq[prev]), _softmax(dp[prev]), a, m)
    for v in range(V):
      if pi[v] > 0:
        rec(prefix + [v], prob * pi[v], v)

  rec([], 1.0, 0)
  return law, m


def ref_seq_laws(tables, temp, confidence):
  """P_q(y), P_p(y) and conf(y) for every full output y (MAX_NEW tokens, EOS absorbing)."""
  dq, dp = tables
  law_q, law_p, conf = {}, {}, {}
  for y in itertools.product(range(V), repeat=MAX_NEW):
    if EOS in y and any(t != 0 for t in y[y.index(EOS) + 1:]):
      continue
    n = y.index(EOS) + 1 if EOS in y else MAX_NEW
    prev, pq, pp, confs = 0, 1.0, 1.0, []
    for t in y[:n]:
      pq *= _probs(dq[prev], temp)[t]
      pp *= _probs(dp[prev], temp)[t]
      confs.append(_softmax(dq[prev]).max())
      prev = t
    law_q[y], law_p[y] = pq, pp
    conf[y] = np.mean(confs) if confidence == "mean" else np.min(confs)
  return law_q, law_p, conf


def ref_seq_cascade_law(law_q, law_p, conf, a):
  """P_q(y)·1[conf(y) ≥ 1 − a] + P(defer)·P_p(y); also the margins and P(defer)."""
  margins = [abs(conf[y] - (1 - a)) for y in law_q if law_q[y] > 0]
  p_defer = sum(law_q[y] for y in law_q if conf[y] < 1 - a)
  law = {y: law_q[y] * (conf[y] >= 1 - a) + p_defer * law_p[y] for y in law_q}
  return {y: pr for y, pr in law.items() if pr > 0}, margins, p_defer


def seq_alpha(law_q, conf):
  """α whose threshold 1 − α splits the drafter's outputs near P(defer) = 1/2."""
  levels = sorted({round(c, 9) for y, c in conf.items() if law_q[y] > 0})
  below = [sum(law_q[y] for y in law_q if conf[y] < c) for c in levels]
  i = int(np.argmin([abs(b - 0.5) for b in below]))
  return float(1 - (levels[i - 1] + levels[i]) / 2)


# ------------------------------------------------------------- comparison


def chi_square_pvalue(tokens, law, cells=False):
  """Pearson chi-square of the rows of tokens [N, L] against `law` (over sequences of L).

  Cells with expected count < 5 are merged into one cell; a sequence outside
  the support fails outright (p = 0).
  """
  n = tokens.shape[0]
  width = len(next(iter(law)))
  seqs, counts = np.unique(tokens[:, :width], axis=0, return_counts=True)
  observed = {tuple(int(t) for t in s): c for s, c in zip(seqs, counts)}
  outside = [s for s in observed if s not in law]
  assert not outside, f"sequences with probability 0 were generated: {outside[:5]}"
  obs, exp, rare_obs, rare_exp = [], [], 0, 0.0
  for seq, pr in law.items():
    if n * pr >= 5:
      obs.append(observed.get(seq, 0))
      exp.append(n * pr)
    else:
      rare_obs += observed.get(seq, 0)
      rare_exp += n * pr
  if rare_exp > 0:
    obs.append(rare_obs)
    exp.append(rare_exp)
  obs, exp = np.array(obs, float), np.array(exp, float)
  exp *= obs.sum() / exp.sum()  # absorb float rounding of the law's total
  stat = ((obs - exp) ** 2 / exp).sum()
  pval = scipy.stats.chi2.sf(stat, len(obs) - 1)
  return (pval, len(obs)) if cells else pval


def _models(tables):
  dq, dp = tables
  return (BigramModel(jnp.asarray(dq, jnp.float32)), BigramModel(jnp.asarray(dp, jnp.float32)))


INPUTS = jnp.ones((N, 2), jnp.int32)  # bigram models ignore the inputs


def _alpha_for(kind, tables):
  """α that makes the rule defer in some contexts and not others (at T = 1)."""
  dq, dp = tables
  q0 = np.array([_softmax(r) for r in dq])
  p0 = np.array([_softmax(r) for r in dp])
  rows = [0, 2, 3, 4, 5]  # contexts reachable before EOS
  if kind == "chow":
    stat = 1 - q0[rows].max(1)
  elif kind == "diff":
    stat = p0[rows].max(1) - q0[rows].max(1)
  elif kind == "opt":
    stat = (p0[rows].max(1) - q0[rows].max(1)) / np.maximum(q0 - p0, 0)[rows].sum(1)
    stat = np.maximum(stat, 0.0)
  elif kind == "bild":
    stat = -np.log(p0[rows, q0[rows].argmax(1)])
  else:
    return {"token_v1": 0.15, "token_v2": 0.2, "token_v3": 0.5, "lossy": 0.4}.get(kind, 0.0)
  s = np.sort(stat)
  return float((s[2] + s[3]) / 2)  # between the middle statistics


def policy_settings(policy, tables):
  """generate() arguments of a draft policy that stops drafts in some contexts
  and not in others: the confidence threshold sits between the drafter's top
  probabilities; the heuristic starts at one draft and moves by one."""
  if policy in ("confidence", "cumulative"):
    top = np.sort([_softmax(r).max() for r in tables[0][[0, 2, 3, 4, 5]]])
    return {"draft_policy": policy, "draft_threshold": float((top[1] + top[2]) / 2)}
  if policy == "heuristic":
    return {"draft_policy": policy, "draft_schedule": (1, 1, 1)}
  return {}


def _run_and_check(method, kind, gamma, temps=(1.0, 0.7), policy=None, **kw):
  if policy is not None:
    temps = temps[:1]   # the draft policies: one temperature here, more power in
    #                     test_sampling_power.py
  for (name, tables), temp in itertools.product(TABLES.items(), temps):
    kw.update(policy_settings(policy, tables))
    a = _alpha_for(kind, tables)
    law, margins = ref_law(kind, tables, a, temp)
    assert not margins.values or min(margins.values) > MARGIN, (name, temp, "near-tie")
    drafter, verifier = _models(tables)
    call = dict(kw)
    if method in ("spec_cascade", "token_cascade", "oracle_cascade"):
      call.update(rule=kind, alpha=a)
    elif method in ("lossy", "bild"):
      call.update(alpha=a)
    res = generate(drafter, verifier, INPUTS, method=method, num_draft_tokens=gamma,
                   temperature=temp, max_new_tokens=MAX_NEW,
                   rng=jax.random.PRNGKey(gamma * 100 + int(10 * temp)), **call)
    pval = chi_square_pvalue(res.tokens, law)
    assert pval > P_MIN, (f"{method}[{kind}] γ={gamma} policy={policy} tables={name} "
                          f"T={temp}: p={pval:.2e}")


RULES = ("chow", "diff", "opt", "token_v1", "token_v2", "token_v3")
# γ = 1 with the constant policy; γ = 3 with each draft policy (drafting.py).
SETTINGS = [(1, None), (3, None), (3, "confidence"), (3, "cumulative"), (3, "heuristic")]


@pytest.mark.parametrize("gamma,policy", SETTINGS)
@pytest.mark.parametrize("rule", RULES)
def test_spec_cascade_exact(rule, gamma, policy):
  _run_and_check("spec_cascade", rule, gamma, policy=policy)


@pytest.mark.parametrize("gamma,policy", SETTINGS)
@pytest.mark.parametrize("method", ["speculative", "lossy", "bild"])
def test_speculative_targets_exact(method, gamma, policy):
  _run_and_check(method, method, gamma, policy=policy)


@pytest.mark.parametrize("method", ["drafter", "verifier"])
def test_single_model_exact(method):
  _run_and_check(method, method, 1)


@pytest.mark.parametrize("gamma", [1, 3])
def test_token_cascade_exact(gamma):
  # γ sets the verifier's catch-up chunk (γ+1): 2 exercises multi-chunk catch-ups.
  _run_and_check("token_cascade", "chow", gamma)


@pytest.mark.parametrize("rule", RULES)
def test_oracle_cascade_exact(rule):
  _run_and_check("oracle_cascade", rule, 1)


@pytest.mark.parametrize("confidence", ["mean", "min"])
def test_seq_cascade_exact(confidence):
  for (name, tables), temp in itertools.product(TABLES.items(), (1.0, 0.7)):
    law_q, law_p, conf = ref_seq_laws(tables, temp, confidence)
    a = seq_alpha(law_q, conf)
    law, margins, p_defer = ref_seq_cascade_law(law_q, law_p, conf, a)
    assert min(margins) > MARGIN and 0.02 < p_defer < 0.98, (name, p_defer)
    drafter, verifier = _models(tables)
    res = generate(drafter, verifier, INPUTS, method="seq_cascade", alpha=a,
                   temperature=temp, max_new_tokens=MAX_NEW, seq_confidence=confidence,
                   rng=jax.random.PRNGKey(3))
    pval = chi_square_pvalue(res.tokens, law)
    assert pval > P_MIN, f"seq_cascade[{confidence}] tables={name} T={temp}: p={pval:.2e}"
    # The deferral rate is binomial around P(defer).
    rate = res.stats["deferrals"].mean()
    assert abs(rate - p_defer) < 5 * np.sqrt(p_defer * (1 - p_defer) / N), (rate, p_defer)


def _truncated_law(tables, res, half, cut):
  """Checks rows [:half] (α .1, T 1) and [half:] (α .6, T .7) of a token_v3 run
  against the reference law with the distributions truncated by `cut`."""
  global _probs
  plain = _probs
  try:
    _probs = lambda logits, t: cut(_softmax(logits / t))  # noqa: E731
    for rows, a, t in ((slice(0, half), 0.1, 1.0), (slice(half, N), 0.6, 0.7)):
      law, margins = ref_law("token_v3", tables, a, t)
      assert min(margins.values) > MARGIN, (a, t, "near-tie")
      pval = chi_square_pvalue(res.tokens[rows], law)
      assert pval > P_MIN, (a, t, pval)
  finally:
    _probs = plain


def _per_row_run(tables, **kw):
  drafter, verifier = _models(tables)
  half = N // 2
  alpha = np.r_[np.full(half, 0.1), np.full(N - half, 0.6)].astype(np.float32)
  temp = np.r_[np.full(half, 1.0), np.full(N - half, 0.7)].astype(np.float32)
  res = generate(drafter, verifier, INPUTS, method="spec_cascade", rule="token_v3",
                 alpha=alpha, temperature=temp, num_draft_tokens=3,
                 max_new_tokens=MAX_NEW, rng=jax.random.PRNGKey(11), **kw)
  return res, half


def test_per_row_alpha_temperature_top_p():
  """Per-row α and T in one batch, with top-p truncation (reuses a compile)."""
  tables = TABLES["far"]
  res, half = _per_row_run(tables, top_p=0.9)

  def nucleus(pr):
    order = np.argsort(-pr)
    before = np.cumsum(pr[order]) - pr[order]
    keep = np.zeros(V, bool)
    keep[order[before < 0.9]] = True
    pr = np.where(keep, pr, 0)
    return pr / pr.sum()

  _truncated_law(tables, res, half, nucleus)


def test_per_row_alpha_temperature_top_k():
  """Per-row α and T in one batch through generate(), with top-k truncation:
  q and p keep their 3 largest tokens; the rules still read q°, p°."""
  tables = TABLES["far"]
  res, half = _per_row_run(tables, top_k=3)

  def top3(pr):
    pr = np.where(pr >= np.sort(pr)[-3], pr, 0)
    return pr / pr.sum()

  _truncated_law(tables, res, half, top3)
  # The truncation is visible: without it the law differs (the test can fail).
  law_full, _ = ref_law("token_v3", tables, 0.1, 1.0)
  assert chi_square_pvalue(res.tokens[:half], law_full) < 1e-6
