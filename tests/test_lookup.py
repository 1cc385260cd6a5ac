"""Prompt-lookup speculative decoding (decoding/lookup.py): the n-gram draft
against a plain-Python reference, exact rounds on a deterministic loop, greedy
identity with verifier-only decoding, and the sampled law (chi-square)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.decoding import generate
from spec_cascade_jax.decoding import sampling
from spec_cascade_jax.decoding.lookup import accept_greedy, accept_one_hot, ngram_draft
from spec_cascade_jax.testing import bigram_from_probs

import test_sampling_exact as exact


def ref_draft(generated, source, n, gamma):
  """The draft the module docstring describes, in plain Python: the latest
  earlier occurrence of the last n generated tokens in the output (its
  continuation repeated with the match's period), else the last one in the
  source (pad past its end), else the last token repeated."""
  last = generated[-1] if generated else 0
  if len(generated) < n:
    return [last] * gamma, False
  key = generated[-n:]
  for start in range(len(generated) - n - 1, -1, -1):
    if generated[start:start + n] == key:
      cont = generated[start + n:]
      return [cont[i % len(cont)] for i in range(gamma)], True
  real = [t for t in source if t != 0]
  for start in range(len(real) - n - 1, -1, -1):
    if real[start:start + n] == key:
      cont = real[start + n:] + [0] * gamma
      return cont[:gamma], True
  return [last] * gamma, False


def test_ngram_draft_matches_reference():
  rs = np.random.RandomState(0)
  gamma, width, found_any, from_source = 4, 24, 0, 0
  for trial in range(300):
    n = 1 + trial % 3
    vocab = 3 + trial % 5              # small vocabularies: many matches and loops
    length = rs.randint(0, 16)
    generated = list(rs.randint(2, vocab + 2, size=length))
    if trial % 4 == 0 and length > 3:  # a repetition loop of period 1..3
      period = 1 + trial % 3
      generated = (generated[:period] * 16)[:length]
    source = list(rs.randint(2, vocab + 2, size=rs.randint(1, 9)))
    seq = np.zeros((1, width), np.int32)
    seq[0, 1:length + 1] = generated
    src = np.zeros((1, 10), np.int32)
    src[0, :len(source)] = source
    draft, found = ngram_draft(jnp.asarray(seq), jnp.asarray([length]), jnp.asarray(src),
                               ngram=n, gamma=gamma)
    want, want_found = ref_draft([int(t) for t in generated], source, n, gamma)
    assert bool(found[0]) == want_found, (generated, source, n)
    assert list(np.asarray(draft[0])) == want, (generated, source, n)
    found_any += want_found
    from_source += want_found and ref_draft(generated, [], n, gamma)[1] is False
  assert found_any > 100 and from_source > 20   # both searches were exercised


def _cycle(v, order):
  """Deterministic bigram: every token (the start token 0 too) -> order[0],
  except order[i] -> order[i + 1] around the cycle."""
  probs = np.zeros((v, v))
  probs[:, order[0]] = 1.0
  for a, b in zip(order, order[1:] + order[:1]):
    probs[a] = np.eye(v)[b]
  return bigram_from_probs(probs)


@pytest.mark.slow
def test_greedy_fast_paths_equal_the_general_ones():
  """accept_greedy and sampling.next_token (the all-greedy branches: argmax of
  the logits, no softmax) give what the general code gives at T = 0."""
  rs = np.random.RandomState(3)
  b, gamma, v = 64, 4, 6                      # a small vocabulary: many matches, ties
  logits = jnp.asarray(rs.randint(0, 3, (b, gamma + 1, v)).astype(np.float32))
  best = np.asarray(sampling.argmax(logits))
  # Drafts that follow the argmax for a random number of positions, then not.
  x = best[:, :gamma].copy()
  cut = rs.randint(0, gamma + 1, b)
  for i, c in enumerate(cut):
    if c < gamma:
      x[i, c] = (x[i, c] + 1) % v
  matched = jnp.asarray(rs.rand(b) < 0.8)
  u = jnp.asarray(rs.rand(b, gamma + 1).astype(np.float32))
  p, _ = sampling.distributions(logits, 0.0)
  n_ref, z_ref = accept_one_hot(jnp.asarray(x), p, u[:, :gamma], u[:, gamma], matched)
  n, z = accept_greedy(jnp.asarray(x), logits, matched)
  np.testing.assert_array_equal(n, n_ref)
  np.testing.assert_array_equal(z, z_ref)
  np.testing.assert_array_equal(n, np.where(matched, cut, 0))   # the test covers each n
  assert set(np.asarray(n)) == set(range(gamma + 1))
  # next_token: all greedy -> the argmax; a mixed batch -> the general sampler.
  lg = jnp.asarray(rs.randn(b, v).astype(np.float32))
  temp = jnp.asarray(np.where(rs.rand(b) < 0.5, 0.0, 1.0).astype(np.float32))
  for t, all_greedy in ((jnp.zeros(b), True), (temp, False)):
    ref = sampling.sample_or_argmax(u[:, 0], sampling.distributions(lg, t)[0], all_greedy)
    got = sampling.next_token(u[:, 0], lg, t, 0, 1.0, jnp.asarray(all_greedy))
    np.testing.assert_array_equal(got, ref)
  assert not np.array_equal(ref, np.asarray(sampling.argmax(lg)))  # sampled rows differ


def test_exact_rounds_on_a_loop():
  """Verifier loops 2 -> 3 -> 4 -> 2 ...; ngram 1, γ = 3, greedy, 12 tokens.

  Rounds 1-4 find no earlier occurrence (4 one-token steps: 2 3 4 2). From
  then on the last token occurred one period earlier: the loop is drafted in
  full, all 3 drafts are accepted plus the bonus, 4 tokens per round: 2 rounds.
  """
  verifier = _cycle(6, [2, 3, 4])
  ids = jnp.full((1, 2), 5, jnp.int32)            # the source holds no loop token
  res = generate(None, verifier, ids, method="prompt_lookup", num_draft_tokens=3,
                 ngram_size=1, max_new_tokens=12)
  assert list(res.tokens[0]) == [2, 3, 4] * 4
  assert res.stats["rounds"][0] == 6
  assert res.stats["draft_tokens"][0] == 6 and res.stats["accepted"][0] == 6
  assert res.stats["drafter_steps"][0] == 0


def test_source_copy_is_drafted():
  """A verifier that copies 2 3 4 5 (EOS after 5): the source holds it, so
  after the first token the rest is one drafted round."""
  verifier = _cycle(7, [2, 3, 4, 5, 1])
  ids = jnp.asarray([[6, 2, 3, 4, 5, 1, 0]], jnp.int32)
  res = generate(None, verifier, ids, method="prompt_lookup", num_draft_tokens=4,
                 ngram_size=1, max_new_tokens=8)
  assert list(res.tokens[0]) == [2, 3, 4, 5, 1, 0, 0, 0]
  assert res.stats["rounds"][0] == 2 and res.stats["accepted"][0] == 4


def test_rows_without_a_match_take_one_token_in_a_chunk_round():
  """Row 0's source holds the copy, row 1's does not: in round 2 row 0 drafts
  and finishes, while row 1 rides in the chunk as a plain verifier step (its
  filler draft is neither counted nor tested)."""
  verifier = _cycle(7, [2, 3, 4, 5, 1])
  ids = jnp.asarray([[6, 2, 3, 4, 5, 1], [6, 6, 0, 0, 0, 0]], jnp.int32)
  res = generate(None, verifier, ids, method="prompt_lookup", num_draft_tokens=4,
                 ngram_size=1, max_new_tokens=8)
  np.testing.assert_array_equal(res.tokens[:, :5], [[2, 3, 4, 5, 1]] * 2)
  np.testing.assert_array_equal(res.stats["rounds"], [2, 5])
  np.testing.assert_array_equal(res.stats["draft_tokens"], [4, 0])
  np.testing.assert_array_equal(res.stats["accepted"], [4, 0])


@pytest.mark.slow
@pytest.mark.parametrize("ngram, gamma", [(1, 3), (2, 5)])
def test_greedy_prompt_lookup_equals_verifier_t5(ngram, gamma, tiny_t5_2_1):
  drafter, verifier = tiny_t5_2_1   # conftest.py: tiny_t5_pair(PRNGKey(3), 2, 1)
  rs = np.random.RandomState(0)
  ids = rs.randint(2, 12, size=(4, 9))             # small id range: lookups match
  ids[1, 4:] = 0
  ids = jnp.asarray(ids, jnp.int32)
  ver = generate(None, verifier, ids, method="verifier", max_new_tokens=24)
  out = generate(drafter, verifier, ids, method="prompt_lookup", num_draft_tokens=gamma,
                 ngram_size=ngram, max_new_tokens=24)
  np.testing.assert_array_equal(out.tokens, ver.tokens)
  np.testing.assert_array_equal(out.stats["num_tokens"], ver.stats["num_tokens"])
  assert np.all(out.stats["draft_tokens"] > 0)     # chunks ran, not only single steps
  assert np.all(out.stats["accepted"] <= out.stats["draft_tokens"])
  assert np.all(out.stats["rounds"] <= ver.stats["rounds"])


@pytest.mark.slow
@pytest.mark.parametrize("gamma", [1, 3])
def test_prompt_lookup_sampling_is_exact(gamma):
  """The first 3 tokens follow the verifier's law (no drafter involved).

  Sources hold every token, so each round drafts from them (ngram 1), and
  the drafts are often rejected: the residual is exercised.
  """
  rs = np.random.RandomState(gamma)
  perms = np.array([rs.permutation([2, 3, 4, 5]) for _ in range(8)])
  ids = jnp.asarray(np.tile(perms, (exact.N // 8, 1)), jnp.int32)
  for name, tables in exact.TABLES.items():
    for temp in (1.0, 0.7):
      law, _ = exact.ref_law("verifier", tables, 0.0, temp)
      _, verifier = exact._models(tables)
      res = generate(None, verifier, ids, method="prompt_lookup", num_draft_tokens=gamma,
                     ngram_size=1, temperature=temp, max_new_tokens=exact.MAX_NEW,
                     rng=jax.random.PRNGKey(7 + gamma))
      s = res.stats
      assert 0 < s["accepted"].sum() < s["draft_tokens"].sum()   # accepts and rejects
      pval = exact.chi_square_pvalue(res.tokens, law)
      assert pval > exact.P_MIN, f"γ={gamma} tables={name} T={temp}: p={pval:.2e}"


def test_prompt_lookup_errors():
  verifier = _cycle(6, [2, 3, 4])
  ids = jnp.ones((1, 2), jnp.int32)
  for bad in (0, 1.5, True):
    with pytest.raises(ValueError, match="ngram_size"):
      generate(None, verifier, ids, method="prompt_lookup", ngram_size=bad)
  with pytest.raises(ValueError, match="verifier"):
    generate(verifier, None, ids, method="prompt_lookup")
  with pytest.raises(ValueError, match=r"method='verifier' takes no ngram_size; drop "
                                       r"ngram_size=1, .*'prompt_lookup'"):
    generate(None, verifier, ids, method="verifier", ngram_size=1)


def test_ngram_size_none_is_the_default_3():
  """None and 3 are one setting: the same compiled function, the same stats."""
  from spec_cascade_jax.decoding import api, methods
  verifier = _cycle(7, [2, 3, 4, 5, 1])
  ids = jnp.asarray([[6, 2, 3, 4, 5, 1, 0]], jnp.int32)
  kw = dict(method="prompt_lookup", num_draft_tokens=2, max_new_tokens=6)
  three = generate(None, verifier, ids, ngram_size=methods.DEFAULT_NGRAM_SIZE, **kw)
  traces = api.TRACE_COUNTS["prompt_lookup"]
  default = generate(None, verifier, ids, **kw)
  assert api.TRACE_COUNTS["prompt_lookup"] == traces and methods.DEFAULT_NGRAM_SIZE == 3
  np.testing.assert_array_equal(default.tokens, three.tokens)
  for k, v in three.stats.items():
    np.testing.assert_array_equal(default.stats[k], v)
