"""The speculative kernel and baselines: exact greedy equalities, stats, compiles, errors."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.decoding import UsageError, api, generate, kernel, loop, methods
from spec_cascade_jax.testing import BigramModel, bigram_from_probs

# ------------------------------------------------------------- one round by hand


def test_docstring_round_example():
  """kernel.py's worked example: draft [a, b, c], a and b accepted, residual d."""
  q = jnp.array([[[.6, .2, .1, .1], [.1, .7, .1, .1], [.1, .1, .6, .2], [.25] * 4]])
  pi = jnp.array([[[.5, .2, .1, .2], [.1, .8, .05, .05], [.1, .1, .2, .6], [.25] * 4]])
  x = jnp.array([[0, 1, 2]])                             # a, b, c
  n, z = kernel.accept_and_correct(x, q, pi, jnp.array([[.5, .9, .5]]), jnp.array([.3]))
  assert (int(n[0]), int(z[0])) == (2, 3)                # two accepted, z = d
  # u_3 = .3: .3·.6 = .18 < .2 accepts c too; the bonus comes from π_4 (u = .6 -> index 2).
  n, z = kernel.accept_and_correct(x, q, pi, jnp.array([[.5, .9, .3]]), jnp.array([.6]))
  assert (int(n[0]), int(z[0])) == (3, 2)
  # u_1 = .9: .9·.6 = .54 ≥ .5 rejects a; residual norm(max(0, π_1 − q_1)) = d.
  n, z = kernel.accept_and_correct(x, q, pi, jnp.array([[.9, .1, .1]]), jnp.array([.0]))
  assert (int(n[0]), int(z[0])) == (0, 3)
  # Committing [a, b, d] after 4 tokens: length 4 -> 7, written at positions 5..7.
  seq = jnp.zeros((1, 12), jnp.int32)
  seq, length, done, count = loop.commit(seq, jnp.array([4]), jnp.array([False]),
                                           jnp.array([[0, 1, 3, 2]]) + 2, jnp.array([3]),
                                           max_new_tokens=10)
  np.testing.assert_array_equal(seq[0], [0, 0, 0, 0, 0, 2, 3, 5, 0, 0, 0, 0])
  assert (int(length[0]), bool(done[0]), int(count[0])) == (7, False, 3)


def test_commit_truncates_after_eos_and_at_max_new():
  seq = jnp.zeros((3, 10), jnp.int32)
  window = jnp.array([[5, 1, 4, 4], [5, 6, 7, 8], [5, 6, 7, 8]])
  seq, length, done, count = loop.commit(
      seq, jnp.array([0, 4, 2]), jnp.array([False, False, True]), window,
      jnp.array([4, 4, 4]), max_new_tokens=6)
  np.testing.assert_array_equal(count, [2, 2, 0])        # EOS; max_new; already done
  np.testing.assert_array_equal(length, [2, 6, 2])
  np.testing.assert_array_equal(done, [True, True, True])
  np.testing.assert_array_equal(seq[0, :6], [0, 5, 1, 0, 0, 0])  # 0 after EOS
  np.testing.assert_array_equal(seq[1, 5:7], [5, 6])


# ------------------------------------------------------------- bigram: exact costs


def _successor(v, jump_after=None):
  """Deterministic bigram: next = prev + 1 (mod v, skipping EOS = 1); optionally
  prev = jump_after -> 2 instead (a disagreement with the plain successor)."""
  probs = np.zeros((v, v))
  for prev in range(v):
    nxt = prev + 1 if prev + 1 < v else 2
    nxt = 2 if nxt == 1 else nxt
    if prev == jump_after:
      nxt = 2
    probs[prev, nxt] = 1.0
  return bigram_from_probs(probs)


def test_exact_rounds_and_stats_with_deterministic_models():
  """Drafter 0→2→3→4→5→6→7→2...; verifier jumps 4→2. γ = 3, greedy."""
  drafter, verifier = _successor(8), _successor(8, jump_after=4)
  ids = jnp.ones((1, 2), jnp.int32)
  res = generate(drafter, verifier, ids, method="speculative", num_draft_tokens=3,
                 max_new_tokens=8)
  # Round 1: draft [2 3 4] all accepted, bonus 2 (verifier after 4) -> 2 3 4 2
  # Round 2: draft [3 4 5]: 3, 4 accepted, 5 rejected -> residual 2 -> 3 4 2
  # Round 3: draft [3 4 5]: 3, 4 accepted again; committing stops at 8 tokens,
  # after 3: one accepted draft is committed, the other is wasted.
  np.testing.assert_array_equal(res.tokens[0], [2, 3, 4, 2, 3, 4, 2, 3])
  s = {k: int(v[0]) for k, v in res.stats.items()}
  assert s == dict(rounds=3, drafter_steps=12, draft_tokens=9, accepted=3 + 2 + 1,
                   wasted_drafts=0 + 1 + 2, verified_tokens=3 * 4, deferrals=8,
                   sequential_verifier_calls=0, num_tokens=8)
  # The heuristic policy from one draft (grow 2, shrink 1), same tokens:
  # R1 L=1: [2] accepted, bonus 3 -> 2 3; L=3.  R2: [4 5 6]: 4 accepted, 5
  # rejected -> 4 2; L=2.  R3: [3 4] accepted, bonus 2 -> 3 4 2; L=3.  R4:
  # [3 4 5]: the 8th token is 3, one accepted draft committed.
  heur = generate(drafter, verifier, ids, method="speculative", num_draft_tokens=3,
                  max_new_tokens=8, draft_policy="heuristic", draft_schedule=(1, 2, 1))
  np.testing.assert_array_equal(heur.tokens, res.tokens)
  h = {k: int(v[0]) for k, v in heur.stats.items()}
  assert h == dict(rounds=4, drafter_steps=9 + 4, draft_tokens=1 + 3 + 2 + 3,
                   accepted=1 + 1 + 2 + 1, wasted_drafts=0 + 2 + 0 + 2,
                   verified_tokens=2 + 4 + 3 + 4, deferrals=8, sequential_verifier_calls=0,
                   num_tokens=8)
  ver = generate(None, verifier, ids, method="verifier", max_new_tokens=8)
  np.testing.assert_array_equal(ver.tokens, res.tokens)
  assert int(ver.stats["sequential_verifier_calls"][0]) == 8


@pytest.mark.parametrize("gamma", [1, 2, 4])
def test_greedy_speculative_equals_verifier_bigram(gamma):
  drafter = BigramModel(jax.random.normal(jax.random.PRNGKey(1), (9, 9)))
  verifier = BigramModel(jax.random.normal(jax.random.PRNGKey(2), (9, 9)))
  ids = jnp.ones((3, 2), jnp.int32)
  spec = generate(drafter, verifier, ids, method="speculative", num_draft_tokens=gamma,
                  max_new_tokens=10)
  ver = generate(drafter, verifier, ids, method="verifier", max_new_tokens=10)
  np.testing.assert_array_equal(spec.tokens, ver.tokens)


# ------------------------------------------------------------- tiny T5 pair

MAX_NEW = 12


@pytest.fixture(scope="module")
def t5_pair(tiny_t5_2_1):
  drafter, verifier = tiny_t5_2_1   # conftest.py: tiny_t5_pair(PRNGKey(3), 2, 1)
  rs = np.random.RandomState(0)
  ids = rs.randint(2, 64, size=(4, 7))
  for row, n in enumerate([7, 3, 5, 1]):                 # ragged: right padding
    ids[row, n:] = 0
  ids = jnp.asarray(ids, jnp.int32)
  ver = generate(drafter, verifier, ids, method="verifier", max_new_tokens=MAX_NEW)
  dra = generate(drafter, verifier, ids, method="drafter", max_new_tokens=MAX_NEW)
  return drafter, verifier, ids, ver, dra


def _assert_zeros_after_eos(tokens):
  for row in tokens:
    if 1 in row:
      assert not row[list(row).index(1) + 1:].any(), row


@pytest.mark.parametrize("gamma", [pytest.param(1, marks=pytest.mark.slow), 3,
                                   pytest.param(5, marks=pytest.mark.slow)])
def test_greedy_speculative_equals_verifier_t5(t5_pair, gamma):
  drafter, verifier, ids, ver, _ = t5_pair
  spec = generate(drafter, verifier, ids, method="speculative", num_draft_tokens=gamma,
                  max_new_tokens=MAX_NEW)
  np.testing.assert_array_equal(spec.tokens, ver.tokens)
  _assert_zeros_after_eos(spec.tokens)
  s = spec.stats
  np.testing.assert_array_equal(s["num_tokens"], ver.stats["num_tokens"])
  np.testing.assert_array_equal(s["draft_tokens"], gamma * s["rounds"])
  np.testing.assert_array_equal(s["drafter_steps"], (gamma + 1) * s["rounds"])
  assert np.all(s["accepted"] <= s["draft_tokens"])
  assert np.all(s["sequential_verifier_calls"] == 0)
  # Fewer verifier calls than tokens unless every draft is rejected.
  assert np.all(s["rounds"] <= s["num_tokens"])
  # Every round but the last commits its accepted drafts and one more token;
  # nothing is counted past the EOS.
  assert np.all(s["num_tokens"] - s["rounds"] <= s["accepted"])
  assert np.all(s["accepted"] <= s["num_tokens"] - s["rounds"] + 1)
  np.testing.assert_array_equal(s["wasted_drafts"], s["draft_tokens"] - s["accepted"])


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["confidence", "heuristic"])
def test_draft_policies_keep_the_verifiers_output_t5(t5_pair, policy):
  """Rows of one batch draft different lengths (per-row settings); greedy
  speculative decoding still returns the verifier's output."""
  drafter, verifier, ids, ver, _ = t5_pair
  kw = ({"draft_threshold": np.array([0.0, 0.3, 0.6, 1.0])} if policy == "confidence"
        else {"draft_schedule": np.array([[1, 0, 0], [1, 1, 1], [3, 2, 1], [4, 0, 4]])})
  spec = generate(drafter, verifier, ids, method="speculative", num_draft_tokens=4,
                  max_new_tokens=MAX_NEW, draft_policy=policy, **kw)
  np.testing.assert_array_equal(spec.tokens, ver.tokens)
  s = spec.stats
  np.testing.assert_array_equal(s["drafter_steps"], s["draft_tokens"] + s["rounds"])
  assert len(set((s["draft_tokens"] / s["rounds"]).round(3))) > 1   # rows differ
  if policy == "heuristic":   # row 0 always drafts one token
    np.testing.assert_array_equal(s["draft_tokens"][0], s["rounds"][0])
  else:                       # threshold 1 drafts nothing; 0 drafts all γ
    assert s["draft_tokens"][3] == 0 and s["draft_tokens"][0] == 4 * s["rounds"][0]


@pytest.mark.slow
def test_chow_extremes_and_token_cascade_t5(t5_pair):
  drafter, verifier, ids, ver, dra = t5_pair
  kw = dict(method="spec_cascade", rule="chow", num_draft_tokens=3, max_new_tokens=MAX_NEW)
  # chow: defer iff max q° < 1 − α. α = 0 defers everywhere: the verifier.
  np.testing.assert_array_equal(generate(drafter, verifier, ids, alpha=0.0, **kw).tokens,
                                ver.tokens)
  # α = 1 never defers: the drafter, with every draft accepted.
  res = generate(drafter, verifier, ids, alpha=1.0, **kw)
  np.testing.assert_array_equal(res.tokens, dra.tokens)
  assert np.all(res.stats["deferrals"] == 0)
  # An α in between: token_cascade and spec_cascade agree token for token.
  conf = jax.nn.softmax(drafter.logits(ids, jnp.pad(dra.tokens, ((0, 0), (1, 0)))), -1)
  alpha = float(1 - np.median(np.asarray(conf.max(-1))))
  spec = generate(drafter, verifier, ids, alpha=alpha, **kw)
  tok = generate(drafter, verifier, ids, alpha=alpha, **{**kw, "method": "token_cascade"})
  np.testing.assert_array_equal(tok.tokens, spec.tokens)
  d = tok.stats["deferrals"].sum()
  assert 0 < d < tok.stats["num_tokens"].sum(), "choose an α with some deferrals"
  np.testing.assert_array_equal(tok.stats["deferrals"], spec.stats["deferrals"])
  # Costs differ: the cascade calls the verifier sequentially, at most once per
  # deferral (fewer when one chunk catches up); spec_cascade never sequentially.
  assert np.all(tok.stats["sequential_verifier_calls"] >= (tok.stats["deferrals"] > 0))
  assert np.all(spec.stats["sequential_verifier_calls"] == 0)
  np.testing.assert_array_equal(tok.stats["drafter_steps"], tok.stats["num_tokens"])


@pytest.mark.slow
def test_greedy_spec_cascade_does_not_depend_on_gamma_t5(t5_pair):
  """Greedy π is a function of the prefix alone, so γ changes the cost, never the
  tokens: a cascade's BLEU at some α holds for every γ (`speed.py
  --cascade-num-draft-tokens`). Fails if a round's bonus token came from p instead
  of π, or a deferral skipped a position."""
  drafter, verifier, ids, ver, dra = t5_pair
  conf = jax.nn.softmax(drafter.logits(ids, jnp.pad(dra.tokens, ((0, 0), (1, 0)))), -1)
  alpha = float(1 - np.median(np.asarray(conf.max(-1))))
  kw = dict(method="spec_cascade", rule="chow", alpha=alpha, max_new_tokens=MAX_NEW)
  res = {g: generate(drafter, verifier, ids, num_draft_tokens=g, **kw) for g in (1, 3)}
  np.testing.assert_array_equal(res[1].tokens, res[3].tokens)
  np.testing.assert_array_equal(res[1].stats["deferrals"], res[3].stats["deferrals"])
  # Both γ had rounds that accepted every draft (the bonus token from π) and
  # deferrals: the equality above covers both paths.
  s = res[1].stats
  assert np.any(s["accepted"] > 0) and 0 < s["deferrals"].sum() < s["num_tokens"].sum()
  assert not np.array_equal(res[1].tokens, ver.tokens)
  assert not np.array_equal(res[1].tokens, dra.tokens)


@pytest.mark.slow
def test_batch_invariance_greedy_t5(t5_pair):
  """Each row decoded alone gives the same tokens as in the ragged batch."""
  drafter, verifier, ids, _, _ = t5_pair
  # Same settings as test_greedy_speculative_equals_verifier_t5[3]: reuses its compile.
  kw = dict(method="speculative", num_draft_tokens=3, max_new_tokens=MAX_NEW)
  batch = generate(drafter, verifier, ids, **kw)
  for row in (1, 3):
    alone = generate(drafter, verifier, ids[row:row + 1], **kw)
    np.testing.assert_array_equal(alone.tokens[0], batch.tokens[row])
    for k, v in alone.stats.items():
      assert v[0] == batch.stats[k][row], k


@pytest.mark.slow
def test_pad_single_row_changes_nothing_t5(t5_pair, monkeypatch):
  """pad_single_row (automatic on GPU) decodes one row as two copies of it and
  returns the first: the same tokens and stats, sampled ones included."""
  drafter, verifier, ids, _, _ = t5_pair
  shapes = []
  jitted = api.jitted_decode
  monkeypatch.setattr(api, "jitted_decode",
                      lambda *a, **k: (shapes.append(a[2].shape), jitted(*a, **k))[1])
  kw = dict(method="speculative", num_draft_tokens=3, max_new_tokens=MAX_NEW,
            temperature=1.0, rng=jax.random.PRNGKey(7))
  for row in (1, 3):
    plain = generate(drafter, verifier, ids[row:row + 1], pad_single_row=False, **kw)
    padded = generate(drafter, verifier, ids[row:row + 1], pad_single_row=True, **kw)
    assert padded.tokens.shape == plain.tokens.shape == (1, MAX_NEW)
    np.testing.assert_array_equal(padded.tokens, plain.tokens)
    for k, v in plain.stats.items():
      np.testing.assert_array_equal(padded.stats[k], v, err_msg=k)
  assert [s[0] for s in shapes] == [1, 2, 1, 2]  # the padded calls decoded two rows
  # Batches of several rows are never padded.
  generate(drafter, verifier, ids, pad_single_row=True, **kw)
  assert shapes[-1] == ids.shape


# ------------------------------------------------------------- compiles and errors


def test_alpha_temperature_top_p_do_not_recompile():
  drafter = BigramModel(jax.random.normal(jax.random.PRNGKey(1), (7, 7)))
  verifier = BigramModel(jax.random.normal(jax.random.PRNGKey(2), (7, 7)))
  ids = jnp.ones((5, 3), jnp.int32)
  kw = dict(method="spec_cascade", rule="diff", num_draft_tokens=2, max_new_tokens=6)
  generate(drafter, verifier, ids, alpha=0.1, **kw)
  before = api.TRACE_COUNTS["spec_cascade"]
  for alpha, temp, top_p in [(0.5, 1.0, 0.9), (-0.3, 0.0, 1.0),
                             (np.linspace(-1, 1, 5), np.linspace(0, 2, 5), 0.5)]:
    generate(drafter, verifier, ids, alpha=alpha, temperature=temp, top_p=top_p,
             rng=jax.random.PRNGKey(4), **kw)
  # New weights of the same shapes do not recompile either.
  generate(BigramModel(drafter.logits * 2), verifier, ids, alpha=0.2, **kw)
  assert api.TRACE_COUNTS["spec_cascade"] == before
  generate(drafter, verifier, ids, alpha=0.2, **{**kw, "num_draft_tokens": 3})
  assert api.TRACE_COUNTS["spec_cascade"] == before + 1  # γ is static


def test_draft_policy_settings_do_not_recompile():
  """A sweep over the confidence threshold or the heuristic schedule compiles
  once per policy: the settings are traced, the policy is static."""
  drafter = BigramModel(jax.random.normal(jax.random.PRNGKey(1), (7, 7)))
  verifier = BigramModel(jax.random.normal(jax.random.PRNGKey(2), (7, 7)))
  ids = jnp.ones((5, 3), jnp.int32)
  kw = dict(method="spec_cascade", rule="chow", alpha=0.3, num_draft_tokens=3,
            max_new_tokens=8)
  before = api.TRACE_COUNTS["spec_cascade"]
  drafts = []
  for threshold in (0.0, 0.2, 0.5, np.linspace(0, 1, 5), 1.0):
    drafts.append(generate(drafter, verifier, ids, draft_policy="confidence",
                           draft_threshold=threshold, **kw).stats["draft_tokens"].sum())
  for schedule in ((3, 2, 1), (1, 1, 1), [[1, 0, 0]] * 5):
    generate(drafter, verifier, ids, draft_policy="heuristic", draft_schedule=schedule, **kw)
  assert api.TRACE_COUNTS["spec_cascade"] == before + 2
  assert drafts[0] > drafts[2] > drafts[-1] == 0   # a higher threshold drafts less


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(method="beam"), ValueError, "valid methods"),
    (dict(rule="chowx"), ValueError, "valid rules"),
    (dict(method="token_cascade", rule="diff"), ValueError, "oracle_cascade"),
    (dict(rule="chow", alpha=1.5), ValueError, "chow"),
    (dict(rule="diff", alpha=-1.5), ValueError, "diff"),
    (dict(method="lossy", alpha=1.0), ValueError, "lossy"),
    (dict(method="bild", alpha=-0.1), ValueError, "bild"),
    (dict(alpha=np.zeros(3)), ValueError, "per-row"),
    (dict(num_draft_tokens=0), ValueError, "num_draft_tokens"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(top_p=0.0), ValueError, "top_p"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(top_k=-1), ValueError, "top_k"),
    (dict(method="seq_cascade", seq_confidence="max"), ValueError, "seq_confidence"),
    (dict(verifier=None), ValueError, "verifier"),
    (dict(drafter=None), ValueError, "drafter"),
    (dict(verifier=BigramModel(jnp.zeros((5, 5)))), ValueError, "vocabularies differ"),
    (dict(input_ids=jnp.ones((2, 3), jnp.float32)), TypeError, "integer"),
    (dict(input_ids=jnp.ones((3,), jnp.int32)), ValueError, "rank 2"),
    (dict(input_ids=jnp.ones((1, 0), jnp.int32)), ValueError, "at least one token"),
    (dict(input_ids=jnp.array([[1, 2], [3, 4]], jnp.int32)), ValueError,
     r"input_ids\[1, 1\] = 4 is not a token id of this vocabulary \[0, 4\)"),
    (dict(input_ids=np.array([[2, -1]], np.int32)), ValueError, r"input_ids\[0, 1\] = -1"),
    (dict(method="drafter", verifier=None, input_ids=np.array([[9]], np.int32)), ValueError,
     "not a token id"),
    (dict(pad_single_row="yes"), ValueError, "pad_single_row"),
    # Draft policies: the kernel's methods only, each setting with its policy.
    (dict(draft_policy="greedy"), ValueError, "Unknown draft_policy 'greedy'; valid"),
    (dict(method="token_cascade", draft_policy="confidence"), ValueError,
     "token_cascade' takes no draft_policy"),
    (dict(method="prompt_lookup", draft_schedule=(1, 1, 1)), ValueError,
     "takes no draft_schedule"),
    (dict(draft_threshold=0.5), ValueError,
     r"draft_threshold is a setting of the draft policies 'confidence', 'cumulative'; "
     r"with draft_policy='constant' it would be ignored: pass draft_policy='confidence'"),
    (dict(draft_policy="confidence", draft_schedule=(1, 1, 1)), ValueError,
     "draft_schedule is a setting of the draft policies 'heuristic'"),
    (dict(draft_policy="confidence", draft_threshold=1.5), ValueError,
     r"draft_threshold must be in \[0, 1\]"),
    (dict(draft_policy="heuristic", draft_schedule=(0, 1, 1), num_draft_tokens=2,
          max_new_tokens=4), ValueError, r"1 <= start <= num_draft_tokens=2"),
    (dict(draft_policy="heuristic", draft_schedule=(1, 1)), ValueError,
     r"three ints \(start, grow, shrink\)"),
    (dict(draft_policy="heuristic", draft_schedule=(1.5, 1, 1)), ValueError, "three ints"),
    # A rule or an α given to a method that takes none would be ignored: rejected,
    # naming the fix.
    (dict(method="speculative", rule="nonsense"), ValueError,
     r"method='speculative' takes no rule; drop rule='nonsense', or use a method that "
     r"takes one: 'spec_cascade', 'token_cascade', 'oracle_cascade'"),
    (dict(method="speculative", rule="token_v3"), ValueError, "takes no rule"),
    (dict(method="seq_cascade", rule="chow"), ValueError, "seq_cascade' takes no rule"),
    (dict(method="lossy", rule="chow"), ValueError, "lossy' takes no rule"),
    (dict(method="bild", rule="chow"), ValueError, "bild' takes no rule"),
    (dict(method="verifier", rule="chow"), ValueError, "verifier' takes no rule"),
    (dict(method="prompt_lookup", rule=""), ValueError, "prompt_lookup' takes no rule"),
    (dict(method="speculative", alpha=0.3), ValueError,
     r"method='speculative' takes no alpha .*drop alpha=0.3, or use a method that takes "
     r"one: 'lossy', 'spec_cascade'"),
    (dict(method="drafter", alpha=0.0), ValueError, "drafter' takes no alpha"),
    (dict(method="verifier", alpha=np.zeros(2)), ValueError,
     r"verifier' takes no alpha .*drop alpha=<array of shape \(2,\)>"),
    (dict(method="prompt_lookup", alpha=0.5), ValueError, "prompt_lookup' takes no alpha"),
    (dict(method="spec_cascade", rule=""), ValueError, "valid rules"),
    (dict(method="oracle_cascade", rule="nonsense"), ValueError, "valid rules"),
    # So are seq_confidence and ngram_size given to a method that takes neither.
    (dict(method="speculative", ngram_size=3), ValueError,
     r"method='speculative' takes no ngram_size; drop ngram_size=3, or use a method that "
     r"takes one: 'prompt_lookup'\."),
    (dict(method="spec_cascade", seq_confidence="mean"), ValueError,
     r"method='spec_cascade' takes no seq_confidence; drop seq_confidence='mean', or use a "
     r"method that takes one: 'seq_cascade'\."),
    (dict(method="seq_cascade", ngram_size=2), ValueError, "takes no ngram_size"),
    (dict(method="prompt_lookup", seq_confidence="min"), ValueError, "takes no seq_confidence"),
    # Sampling needs a key: rng=None would give every call the same samples.
    (dict(temperature=1.0), ValueError,
     r"temperature > 0 samples: pass rng=jax\.random\.PRNGKey\(seed\)"),
    (dict(method="verifier", drafter=None, temperature=np.array([0.0, 0.5])), ValueError,
     "temperature > 0 samples"),
    # γ is bounded by max_new_tokens, top_k by the vocabulary.
    (dict(method="speculative", num_draft_tokens=10_000), ValueError,
     r"num_draft_tokens=10000 exceeds max_new_tokens=64: .*pass num_draft_tokens <= 64"),
    (dict(method="token_cascade", num_draft_tokens=9, max_new_tokens=8), ValueError,
     "pass num_draft_tokens <= 8"),
    (dict(top_k=5), ValueError,
     r"top_k=5 exceeds the verifier's vocabulary of 4 tokens .*pass top_k <= 4"),
    (dict(method="drafter", verifier=None, top_k=5), ValueError,
     "top_k=5 exceeds the drafter's vocabulary of 4 tokens"),
])
def test_errors(kwargs, exc, match):
  args = dict(drafter=BigramModel(jnp.zeros((4, 4))), verifier=BigramModel(jnp.zeros((4, 4))),
              input_ids=jnp.ones((2, 3), jnp.int32))
  args.update(kwargs)
  traces = sum(api.TRACE_COUNTS.values())
  with pytest.raises(exc, match=match) as e:
    generate(**args)
  assert sum(api.TRACE_COUNTS.values()) == traces  # raised before anything compiled
  if exc is ValueError:
    assert isinstance(e.value, UsageError)   # main.py prints it on one line, exit code 2


def test_the_settings_that_fit_run():
  """rng=None is fine at temperature 0; γ up to max_new_tokens, top_k up to the
  vocabulary; γ is ignored by the methods without drafts; None for
  num_draft_tokens is 5, capped at max_new_tokens."""
  d = BigramModel(jnp.zeros((4, 4)))
  ids = jnp.ones((2, 3), jnp.int32)
  assert generate(d, d, ids, method="speculative", num_draft_tokens=3, top_k=4,
                  max_new_tokens=3).tokens.shape == (2, 3)
  assert generate(d, d, ids, method="verifier", num_draft_tokens=50,
                  max_new_tokens=3).tokens.shape == (2, 3)
  api.check_settings(method="speculative", max_new_tokens=3)   # γ None: 3, not 5
  with pytest.raises(UsageError, match="num_draft_tokens=5 exceeds max_new_tokens=3"):
    api.check_settings(method="speculative", num_draft_tokens=5, max_new_tokens=3)


def test_check_settings_needs_no_models():
  """What a job runs before loading anything: generate's own checks."""
  api.check_settings(method="spec_cascade", rule="chow", alpha=0.5, temperature=1.0,
                     rng=jax.random.PRNGKey(0))
  for kwargs, match in [(dict(method="nope"), "Unknown method 'nope'"),
                        (dict(alpha=1.5), "outside"),
                        (dict(method="verifier", alpha=0.3), "takes no alpha"),
                        (dict(temperature=0.7), "pass rng=")]:
    with pytest.raises(UsageError, match=match):
      api.check_settings(**kwargs)
  with pytest.raises(TypeError, match="Unknown generate arguments"):
    api.check_settings(gamma=3)


def test_generate_inside_jit_names_the_fix():
  d = BigramModel(jnp.zeros((4, 4)))
  ids = jnp.ones((2, 3), jnp.int32)
  with pytest.raises(TypeError, match="outside jax.jit"):
    jax.jit(lambda a: generate(d, d, ids, method="spec_cascade", alpha=a).tokens)(0.5)


@pytest.mark.parametrize("method", ["speculative", "drafter", "verifier", "prompt_lookup"])
def test_methods_without_rule_or_alpha_run_when_neither_is_passed(method):
  d = BigramModel(jnp.zeros((4, 4)))
  ids = jnp.ones((2, 3), jnp.int32)
  res = generate(d, d, ids, method=method, max_new_tokens=3)
  assert res.tokens.shape == (2, 3) and res.tokens.dtype == np.int32
  assert set(res.stats) == set(loop.STAT_NAMES)


@pytest.mark.slow
def test_rule_and_alpha_none_mean_the_methods_default():
  """rule=None: token_v3 (token_cascade: chow, its only rule); alpha=None: 0.3.
  lossy, bild and seq_cascade take an α but no rule; seq_confidence=None: mean."""
  drafter = BigramModel(jax.random.normal(jax.random.PRNGKey(1), (9, 9)))
  verifier = BigramModel(jax.random.normal(jax.random.PRNGKey(2), (9, 9)))
  ids = jnp.asarray(np.random.RandomState(0).randint(2, 9, size=(3, 4)), jnp.int32)
  kw = dict(num_draft_tokens=2, max_new_tokens=6)
  for method, rule in (("spec_cascade", "token_v3"), ("token_cascade", "chow")):
    np.testing.assert_array_equal(
        generate(drafter, verifier, ids, method=method, **kw).tokens,
        generate(drafter, verifier, ids, method=method, rule=rule, alpha=0.3, **kw).tokens)
  for method in ("lossy", "bild", "seq_cascade"):
    np.testing.assert_array_equal(
        generate(drafter, verifier, ids, method=method, **kw).tokens,
        generate(drafter, verifier, ids, method=method, alpha=0.3, **kw).tokens)
  # seq_confidence=None: "mean".
  np.testing.assert_array_equal(
      generate(drafter, verifier, ids, method="seq_cascade", alpha=0.5, **kw).tokens,
      generate(drafter, verifier, ids, method="seq_cascade", alpha=0.5, seq_confidence="mean",
               **kw).tokens)


def test_the_table_of_methods_imports_without_jax_and_drives_generate():
  """decoding/methods.py declares each method once; the grids, summary and
  plots read it without importing jax, and `generate` follows it."""
  code = ("import sys; from spec_cascade_jax.decoding import methods; "
          "from spec_cascade_jax.evaluation import grids, summary; "
          "assert 'jax' not in sys.modules, 'jax imported'; print(methods.names())")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert api.METHODS == methods.names() and set(methods.LOOPS) == {
      m.loop for m in methods.METHODS.values()}
  for name, m in methods.METHODS.items():
    assert api.method_takes_rule(name) == m.takes_rule
    assert (not m.takes_rule) or m.default_rule in methods.RULES
    for arg in methods.METHOD_ARGS:
      assert api.method_takes(name, arg) == m.takes(arg)
  assert methods.taking("ngram_size") == ("prompt_lookup",)
  assert methods.taking("seq_confidence") == ("seq_cascade",)
  assert methods.taking("rule") == ("spec_cascade", "token_cascade", "oracle_cascade")
  with pytest.raises(ValueError, match="Unknown method 'nope'; valid methods"):
    methods.get("nope")
  with pytest.raises(ValueError, match="loop 'x' is not one of"):
    methods.Method("m", "x")


def test_the_method_facts_agree_with_the_sweep_grids():
  """grids.NO_ALPHA_METHODS (no jax import there) matches api's single definition,
  and every sweep point's generate arguments pass the rule/alpha checks."""
  from spec_cascade_jax.evaluation import grids, infer
  assert {m for m in api.METHODS if not api.method_takes_alpha(m)} == set(
      grids.NO_ALPHA_METHODS)
  assert all(api.method_takes_alpha(m) for m in api.METHODS if api.method_takes_rule(m))
  for grid in grids.GRIDS.values():
    for point in grids.build_points(grid):
      kw = infer.decode_kwargs(point, max_new_tokens=8)
      assert ("rule" in kw) == api.method_takes_rule(point.method), point
      assert ("alpha" in kw) == api.method_takes_alpha(point.method), point
      api.check_settings(**kw)
  # infer / evaluate pass their rule and alpha defaults for every method.
  point = grids.Point("infer", "speculative", "token_v3", 0.3)
  assert "rule" not in infer.decode_kwargs(point, 8) and "alpha" not in infer.decode_kwargs(
      point, 8)
