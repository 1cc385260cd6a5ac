"""The law of greedy decoding (T = 0) for every method and rule, γ ∈ {1, 3}.

At T = 0 every distribution that is sampled is one-hot, so every target is
one-hot and each (tables, α) gives ONE output. The rules still decide on the
UNSCALED distributions q°, p° (softmax at T = 1), so greedy decoding is where
a rule reading q instead of q° (or the other way round) shows. The reference
(law_reference.py, float64 numpy, independent of the library) follows the
output token by token; for the speculative kernel it also replays the rounds
(drafts along the drafter's argmax path, the leading run of matches accepted)
and so predicts `rounds` and `accepted`.

Each case decodes several random bigram pairs, with one random α per row in
the rule's range, so the rows of one batch take different branches; a case
asserts that they did (some rows differ from the verifier's output and some
from the drafter's). Rows whose path passes a decision within 1e-4 of its
threshold are left out (float32 could flip them); at most a few are.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import law_reference as ref
from spec_cascade_jax.decoding import generate
from spec_cascade_jax.testing import BigramModel

V, ROWS, MAX_NEW, TABLE_SETS = 8, 96, 10, 6
MARGIN = 1e-4
pytestmark = pytest.mark.slow  # ~40 compiled decodes (about 2 minutes)

RULES = ("chow", "diff", "opt", "token_v1", "token_v2", "token_v3")
RULE_METHODS = ("spec_cascade", "oracle_cascade", "token_cascade")
SPEC_KERNEL = ("spec_cascade", "speculative", "lossy", "bild")
# Where α changes decisions at T = 0 (each inside the rule's valid range).
ALPHA_DRAW = {"chow": (0.0, 1.0), "diff": (-0.5, 0.5), "opt": (0.0, 1.2),
              "token_v1": (0.0, 1.0), "token_v2": (0.0, 1.0), "token_v3": (0.0, 1.0),
              "lossy": (0.0, 0.95), "bild": (0.0, 4.0), "seq_cascade": (0.0, 1.0)}

CASES = ([("spec_cascade", r) for r in RULES] + [("oracle_cascade", r) for r in RULES]
         + [("token_cascade", "chow"), ("speculative", None), ("lossy", None),
            ("bild", None), ("prompt_lookup", None), ("drafter", None), ("verifier", None),
            ("seq_cascade", "mean"), ("seq_cascade", "min")])


def _tables(seed):
  """A verifier table and a drafter that copies it to a random degree."""
  rs = np.random.RandomState(seed)
  dp = 2.0 * rs.randn(V, V)
  dp[:, ref.EOS] += rs.uniform(-2.0, 0.5)  # outputs of many lengths
  dq = rs.uniform(0.0, 1.0) * dp + 1.5 * rs.randn(V, V)
  return dq, dp


# The draft policies (decoding/drafting.py) on the speculative kernel's methods.
POLICY_CASES = [("spec_cascade", "chow"), ("spec_cascade", "token_v3"), ("speculative", None),
                ("lossy", None), ("bild", None)]


def _policy_settings(policy, gamma, rs):
  """Per-row settings of `policy` drawn so rows stop at different places."""
  if policy in ("confidence", "cumulative"):
    return {"draft_threshold": rs.uniform(0.2, 0.9, ROWS).astype(np.float32)}
  if policy == "heuristic":
    return {"draft_schedule": np.stack([rs.randint(1, gamma + 1, ROWS),
                                        rs.randint(0, 3, ROWS),
                                        rs.randint(0, 2, ROWS)], axis=1).astype(np.int32)}
  return {}


def _decode(method, rule, gamma, dq, dp, alpha, inputs, policy_kw=None):
  kw = dict(policy_kw or {})
  if method in RULE_METHODS:
    kw["rule"] = rule
  if method == "seq_cascade":
    kw["seq_confidence"] = rule
  if method in RULE_METHODS or method in ALPHA_DRAW:
    kw["alpha"] = alpha
  drafter = None if method in ("prompt_lookup", "verifier") else BigramModel(
      jax.numpy.asarray(dq, jax.numpy.float32))
  return generate(drafter, BigramModel(jax.numpy.asarray(dp, jax.numpy.float32)), inputs,
                  method=method, num_draft_tokens=gamma, temperature=0.0,
                  max_new_tokens=MAX_NEW, rng=jax.random.PRNGKey(0), **kw)


def _reference(method, rule, gamma, dq, dp, a, m, policy_kw=None, row=None):
  """(tokens, {stat: value}) that the reference predicts for one row."""
  if method == "seq_cascade":
    tokens, deferred = ref.greedy_seq_cascade(dq, dp, a, MAX_NEW, rule, m)
    return tokens, {"deferrals": int(deferred)}
  kind = {"prompt_lookup": "verifier", "token_cascade": "chow"}.get(
      method, rule if method in RULE_METHODS else method)
  tokens, deferred_at = ref.greedy_chain(kind, dq, dp, a, MAX_NEW, m)
  stats = {}
  if method != "prompt_lookup":
    stats["deferrals"] = len(deferred_at)
  if method in SPEC_KERNEL:
    policy = dict(policy="constant")
    if policy_kw and "draft_threshold" in policy_kw:
      policy = dict(policy=policy_kw["draft_policy"],
                    threshold=float(policy_kw["draft_threshold"][row]))
    elif policy_kw and "draft_schedule" in policy_kw:
      policy = dict(policy="heuristic",
                    schedule=[int(x) for x in policy_kw["draft_schedule"][row]])
    replay, rounds, accepted, drafted = ref.greedy_rounds(kind, dq, dp, a, gamma, MAX_NEW, m,
                                                          **policy)
    np.testing.assert_array_equal(replay, tokens)  # the reference agrees with itself
    stats.update(rounds=rounds, accepted=accepted, draft_tokens=drafted,
                 drafter_steps=drafted + rounds, wasted_drafts=drafted - accepted)
    if policy["policy"] == "constant":
      stats["verified_tokens"] = rounds * (gamma + 1)
  if method == "token_cascade":
    stats["rounds"] = ref.token_cascade_calls(tokens, deferred_at, gamma + 1)
  return tokens, stats


@pytest.mark.parametrize("gamma", [1, 3])
@pytest.mark.parametrize("method,rule", CASES)
def test_greedy_output_and_counts_match_the_reference(method, rule, gamma):
  _check(method, rule, gamma)


@pytest.mark.parametrize("policy", ["confidence", "cumulative", "heuristic"])
@pytest.mark.parametrize("method,rule", POLICY_CASES)
def test_draft_policies_keep_the_greedy_law(method, rule, policy):
  """Every row's output is the constant-γ output (the law), and its counts
  are the reference's replay of its own draft lengths."""
  _check(method, rule, 3, policy)


def _check(method, rule, gamma, policy=None):
  key = rule if method in RULE_METHODS else method
  rs = np.random.RandomState(gamma)
  checked = skipped = differ_v = differ_d = 0
  for seed in range(TABLE_SETS):
    dq, dp = _tables(seed)
    alpha = rs.uniform(*ALPHA_DRAW.get(key, (0.0, 0.0)), ROWS).astype(np.float32)
    inputs = rs.randint(2, V, (ROWS, 6)).astype(np.int32)  # prompt_lookup reads them
    policy_kw = {"draft_policy": policy, **_policy_settings(policy, gamma, rs)} if policy else None
    res = _decode(method, rule, gamma, dq, dp, alpha, inputs, policy_kw)
    ver, _ = ref.greedy_chain("verifier", dq, dp, 0.0, MAX_NEW, ref.Margins())
    dra, _ = ref.greedy_chain("drafter", dq, dp, 0.0, MAX_NEW, ref.Margins())
    for b in range(ROWS):
      m = ref.Margins()
      tokens, stats = _reference(method, rule, gamma, dq, dp, float(alpha[b]), m, policy_kw, b)
      if m.smallest() < MARGIN:
        skipped += 1
        continue
      checked += 1
      where = f"{method}[{rule}] γ={gamma} tables={seed} row={b} α={alpha[b]:.4f}"
      np.testing.assert_array_equal(res.tokens[b], tokens, err_msg=where)
      n = list(tokens).index(ref.EOS) + 1 if ref.EOS in tokens else MAX_NEW
      assert res.stats["num_tokens"][b] == n, where
      for name, want in stats.items():
        assert res.stats[name][b] == want, (where, name, res.stats[name][b], want)
      differ_v += not np.array_equal(tokens, ver)
      differ_d += not np.array_equal(tokens, dra)
  assert skipped <= 0.1 * (checked + skipped), (checked, skipped)
  if policy:  # the policy changed the drafting: rows drafted fewer than γ per round
    assert np.any(res.stats["draft_tokens"] < gamma * res.stats["rounds"])
  # The cases are not vacuous: the drafter and the verifier disagree on
  # these tables, and the cascades take both branches across rows.
  if method != "drafter":
    assert differ_d > 0, "every output equals the drafter's"
  if method not in ("verifier", "speculative", "prompt_lookup", "lossy"):
    assert differ_v > 0, "every output equals the verifier's"
