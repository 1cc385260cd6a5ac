"""Decoder-only LMs through the unchanged decoding kernel (models/protocol.py).

Greedy: speculative decoding equals verifier-only decoding, which equals the
argmax chain of full forwards, on ragged prompts whose token 0 is real and
whose EOS is far from 1 (a Llama-shaped pair). A T5 drafter with an LM
verifier of the same vocabulary works too. EOS ids other than 1 end rows in
every loop. Monte Carlo: the law of every method and rule on a V = 6 LM pair,
with two prompt lengths in one batch, equals the exact law enumerated from
full forwards; and
spec_cascade at γ = 1 samples like the authors' colab loop, re-implemented here
in plain numpy (a two-sample test, no enumerated law in between).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import law_reference as ref
from test_sampling_exact import chi_square_pvalue, ref_seq_cascade_law, seq_alpha

import spec_cascade_jax as scj
from spec_cascade_jax.decoding import loop
from spec_cascade_jax.models.t5 import PRESETS, T5Model
from spec_cascade_jax.testing import BigramModel, bigram_from_probs, tiny_lm_pair

# Ragged rows of 6, 2 and 4 tokens; token 0 is real (row 1); pads are 7s.
PROMPTS = np.array([[5, 6, 7, 8, 9, 10], [0, 3, 7, 7, 7, 7], [11, 0, 12, 13, 7, 7]],
                   np.int32)
LENGTHS = np.array([6, 2, 4], np.int32)
MAX_NEW = 10
_full = jax.jit(lambda m, x: m.logits(x))


@pytest.fixture(scope="module")
def pair():
  """Llama-shaped (EOS 127, no pad id). The drafter is a noisy copy of the
  verifier, so it agrees on some tokens and not on others."""
  _, verifier = tiny_lm_pair(jax.random.PRNGKey(0), "llama", init_std=0.3)
  noise = np.random.default_rng(0)
  drafter = verifier.replace(params=jax.tree.map(
      lambda x: x + 0.15 * noise.standard_normal(x.shape).astype(np.float32),
      verifier.params))
  return drafter, verifier


def _argmax_chain(model, b, n_new):
  """Greedy by full forwards of the growing unpadded row (no cache, no kernel)."""
  seq = list(PROMPTS[b, :LENGTHS[b]])
  width = LENGTHS.max() + n_new
  for _ in range(n_new):
    ids = np.zeros((1, width), np.int32)
    ids[0, :len(seq)] = seq
    seq.append(int(np.argmax(np.asarray(_full(model, ids))[0, len(seq) - 1])))
    if seq[-1] in model.config.eos_ids:
      break
  return seq[LENGTHS[b]:]


def test_greedy_speculative_equals_greedy_verifier(pair):
  drafter, verifier = pair
  ver = scj.generate(None, verifier, PROMPTS, method="verifier", max_new_tokens=MAX_NEW,
                     input_lengths=LENGTHS)
  for b in range(3):
    want = _argmax_chain(verifier, b, MAX_NEW)
    np.testing.assert_array_equal(ver.tokens[b, :len(want)], want, err_msg=f"row {b}")
  spec = scj.generate(drafter, verifier, PROMPTS, method="speculative", num_draft_tokens=3,
                      max_new_tokens=MAX_NEW, input_lengths=LENGTHS)
  np.testing.assert_array_equal(spec.tokens, ver.tokens)
  np.testing.assert_array_equal(spec.stats["num_tokens"], ver.stats["num_tokens"])
  # Drafts were both accepted and rejected: the equality is not vacuous.
  assert 0 < spec.stats["accepted"].sum() < spec.stats["draft_tokens"].sum()
  assert (spec.stats["rounds"] < ver.stats["rounds"]).any()


def test_mixed_pair_t5_drafter_lm_verifier(pair):
  """Any family drafts for any other when the vocabularies match; the EOS ids
  must be reconciled explicitly, and a vocabulary mismatch names both sizes."""
  _, verifier = pair
  cfg = PRESETS["tiny-v1.0"].replace(vocab_size=verifier.vocab_size, num_layers=1)
  shapes = jax.eval_shape(lambda r: T5Model.init(cfg, r, jit=False), jax.random.PRNGKey(1))
  draw = np.random.default_rng(1)
  t5 = T5Model(config=cfg, params=jax.tree.map(
      lambda x: jnp.asarray(0.3 * draw.standard_normal(x.shape), jnp.float32),
      shapes.params))
  with pytest.raises(ValueError, match=r"different EOS ids \(drafter: \[1\], "
                                       r"verifier: \[127\]\).*eos_id="):
    scj.generate(t5, verifier, PROMPTS, method="speculative", input_lengths=LENGTHS)
  small = BigramModel(jnp.zeros((64, 64)))
  with pytest.raises(ValueError, match=r"vocabularies differ \(64 vs 128\)"):
    scj.generate(small, verifier, PROMPTS, method="speculative", eos_id=127)
  ver = scj.generate(None, verifier, PROMPTS, method="verifier", max_new_tokens=MAX_NEW,
                     input_lengths=LENGTHS)
  mixed = scj.generate(t5, verifier, PROMPTS, method="speculative", num_draft_tokens=3,
                       max_new_tokens=MAX_NEW, input_lengths=LENGTHS, eos_id=127)
  np.testing.assert_array_equal(mixed.tokens, ver.tokens)


@pytest.mark.parametrize("bad,match", [
    (np.array([6, 2]), r"input_lengths must be an integer array of shape \(3,\)"),
    (np.array([6, 0, 4]), r"input_lengths\[1\] = 0 is outside \[1, 6\]"),
    (np.array([6, 2, 7]), r"input_lengths\[2\] = 7 is outside \[1, 6\]"),
    (np.array([6.0, 2.0, 4.0]), "integer array"),
])
def test_input_lengths_errors(pair, bad, match):
  with pytest.raises(ValueError, match=match):
    scj.generate(*pair, PROMPTS, method="speculative", input_lengths=bad)


# ---------------------------------------------------------------------------- EOS ids


@flax.struct.dataclass
class _EosBigram(BigramModel):
  """A bigram model that names its own EOS ids (protocol.py's `eos_id`)."""
  eos_id: tuple = flax.struct.field(pytree_node=False, default=(1,))


def _chain(v=8):
  """0 -> 2 -> 3 -> ... -> v-1 -> 2, deterministic."""
  probs = np.zeros((v, v))
  for prev in range(v):
    probs[prev, prev + 1 if 2 <= prev + 1 < v else 2] = 1.0
  return bigram_from_probs(probs).logits


@pytest.mark.parametrize("method", ["verifier", "speculative", "prompt_lookup"])
def test_eos_other_than_one_ends_rows(method):
  """The models' own EOS id (4) ends rows in each loop (baselines, kernel, lookup)."""
  model = _EosBigram(logits=_chain(), eos_id=(4,))
  ids = jnp.ones((2, 3), jnp.int32)
  drafter = model if method == "speculative" else None
  res = scj.generate(drafter, model, ids, method=method, max_new_tokens=6)
  np.testing.assert_array_equal(res.tokens, [[2, 3, 4, 0, 0, 0]] * 2)
  np.testing.assert_array_equal(res.stats["num_tokens"], [3, 3])
  if method == "verifier":
    # eos_id= overrides the models' own; a tuple: any of its ids ends a row.
    res = scj.generate(None, model, ids, method=method, max_new_tokens=6, eos_id=(6, 3))
    np.testing.assert_array_equal(res.tokens[0], [2, 3, 0, 0, 0, 0])


def test_commit_with_eos_ids():
  window = jnp.array([[5, 4, 3, 2], [7, 7, 7, 7]])
  args = (jnp.zeros((2, 8), jnp.int32), jnp.zeros(2, jnp.int32), jnp.zeros(2, bool), window,
          jnp.full(2, 4, jnp.int32))
  _, length, done, _ = loop.commit(*args, max_new_tokens=6, eos_ids=(3, 4))
  np.testing.assert_array_equal(length, [2, 4])
  np.testing.assert_array_equal(done, [True, False])
  _, length, _, _ = loop.commit(*args, max_new_tokens=6, eos_ids=())  # no EOS at all
  np.testing.assert_array_equal(length, [4, 4])
  _, length, _, _ = loop.commit(*args, max_new_tokens=6)             # T5's EOS 1
  np.testing.assert_array_equal(length, [4, 4])


def test_eos_errors():
  four, one = _EosBigram(logits=_chain(), eos_id=(4,)), BigramModel(_chain())
  ids = jnp.ones((1, 3), jnp.int32)
  with pytest.raises(ValueError, match=r"different EOS ids \(drafter: \[1\], verifier: \[4\]"):
    scj.generate(one, four, ids, method="speculative")
  scj.generate(one, four, ids, method="verifier", max_new_tokens=2)  # drafter unused
  with pytest.raises(ValueError, match=r"eos_id 8 is not a token id of the vocabulary"):
    scj.generate(four, four, ids, method="speculative", eos_id=8)
  with pytest.raises(ValueError, match="eos_id must be an int token id"):
    scj.generate(four, four, ids, method="speculative", eos_id="</s>")


# ---------------------------------------------------------------------------- Monte Carlo

V, EOS, N, MC_NEW = 6, 5, 10000, 3
# Two prompts of different lengths in one batch; row group 1 is padded with 0s
# (a real token here) that input_lengths must hide.
MC_PROMPTS = {0: [2, 0, 3], 1: [1, 2]}
P_MIN, MARGIN = 1e-4, 1e-4


@pytest.fixture(scope="module")
def mc_pair():
  # Llama-shaped V = 6 pair: EOS 5, token 0 real, no pad id.
  return tiny_lm_pair(jax.random.PRNGKey(5), "llama", vocab_size=V, init_std=0.6,
                      hidden_size=16, intermediate_size=32)


def _contexts():
  """Every generated prefix shorter than MC_NEW that has not ended (EOS absorbs)."""
  out, frontier = [()], [()]
  for _ in range(MC_NEW - 1):
    frontier = [c + (v,) for c in frontier for v in range(V) if EOS not in c]
    out += frontier
  return out


def _next_token_probs(model, prompt):
  """{context: softmax(logits)} float64, from full forwards of prompt + context."""
  ctx = _contexts()
  width = len(prompt) + MC_NEW
  ids = np.zeros((len(ctx), width), np.int32)
  for i, c in enumerate(ctx):
    ids[i, :len(prompt) + len(c)] = list(prompt) + list(c)
  logits = np.asarray(_full(model, ids), np.float64)
  return {c: ref.softmax(logits[i, len(prompt) + len(c) - 1]) for i, c in enumerate(ctx)}


def _law(q, p, kind, alpha):
  """{(y1, y2, y3): probability} of the method's per-position targets (T = 1)."""
  law, m = {}, ref.Margins()

  def rec(prefix, prob):
    if len(prefix) == MC_NEW:
      law[prefix] = law.get(prefix, 0.0) + prob
      return
    if EOS in prefix:
      return rec(prefix + (0,), prob)
    qc, pc = q[prefix], p[prefix]
    pi = ref.target(kind, qc, pc, qc, pc, alpha, m)
    for v in range(V):
      if pi[v] > 0:
        rec(prefix + (v,), prob * pi[v])

  rec((), 1.0)
  return law, m


def _rule_alpha(kind, q, p):
  """α that splits the rule's statistic over the reachable contexts in half
  (so the rule defers in some and not in others); fixed values for the
  token rules and lossy SD."""
  ctx = [c for c in q if EOS not in c]
  if kind == "chow":
    stat = [1 - q[c].max() for c in ctx]
  elif kind == "diff":
    stat = [p[c].max() - q[c].max() for c in ctx]
  elif kind == "opt":
    stat = [max(p[c].max() - q[c].max(), 0.0) / np.maximum(q[c] - p[c], 0).sum() for c in ctx]
  elif kind == "bild":
    stat = [-np.log(p[c][q[c].argmax()]) for c in ctx]
  else:
    return {"token_v1": 0.15, "token_v2": 0.2, "token_v3": 0.5, "lossy": 0.4}.get(kind)
  stat = np.sort(stat)
  mid = len(stat) // 2
  return float((stat[mid - 1] + stat[mid]) / 2)


def _seq_laws(q, p):
  """P_q(y), P_p(y) and the mean confidence (max q° per generated token, EOS
  included) of every output y of MC_NEW tokens (0s after EOS)."""
  law_q, law_p, conf = {}, {}, {}

  def rec(prefix, pq, pp, confs):
    if len(prefix) == MC_NEW or EOS in prefix:
      y = prefix + (0,) * (MC_NEW - len(prefix))
      law_q[y], law_p[y], conf[y] = pq, pp, float(np.mean(confs))
      return
    for v in range(V):
      rec(prefix + (v,), pq * q[prefix][v], pp * p[prefix][v], confs + [q[prefix].max()])

  rec((), 1.0, 1.0, [])
  return law_q, law_p, conf


RULES = ("chow", "diff", "opt", "token_v1", "token_v2", "token_v3")
MC_CASES = ([("drafter", None), ("verifier", None), ("speculative", None), ("lossy", None),
             ("bild", None), ("prompt_lookup", None), ("token_cascade", "chow"),
             ("oracle_cascade", "opt"), ("seq_cascade", None)]
            + [("spec_cascade", r) for r in RULES])


@pytest.mark.parametrize("method,rule", MC_CASES)
@pytest.mark.slow
def test_monte_carlo_law_on_an_lm_pair(mc_pair, method, rule):
  """Every method and rule: the law of the generated sequences equals the
  exact law, per prompt length in one ragged batch."""
  drafter, verifier = mc_pair
  ids = np.zeros((N, 3), np.int32)
  lengths = np.zeros((N,), np.int32)
  group = np.arange(N) >= N // 2
  for g, prompt in MC_PROMPTS.items():
    ids[group == g, :len(prompt)] = prompt
    lengths[group == g] = len(prompt)
  probs = {g: (_next_token_probs(drafter, pr), _next_token_probs(verifier, pr))
           for g, pr in MC_PROMPTS.items()}
  kind = {"prompt_lookup": "speculative", "seq_cascade": "seq"}.get(method, rule or method)
  if method == "seq_cascade":
    # One α per prompt (per-row α), each splitting that prompt's outputs.
    laws = {g: _seq_laws(*probs[g]) for g in MC_PROMPTS}
    alphas = {g: seq_alpha(laws[g][0], laws[g][2]) for g in MC_PROMPTS}
    alpha = np.where(group, alphas[1], alphas[0]).astype(np.float32)
  else:
    alpha = _rule_alpha(kind, *probs[0])
  kw = {"rule": rule} if rule else {}
  if scj.decoding.api.method_takes_alpha(method):
    kw["alpha"] = alpha
  res = scj.generate(None if method == "verifier" else drafter, verifier, ids, method=method,
                     num_draft_tokens=2, temperature=1.0, max_new_tokens=MC_NEW,
                     input_lengths=lengths, rng=jax.random.PRNGKey(17), **kw)
  for g in MC_PROMPTS:
    if method == "seq_cascade":
      law, margins, p_defer = ref_seq_cascade_law(*laws[g], float(np.float32(alphas[g])))
      assert min(margins) > MARGIN and 0.02 < p_defer < 0.98, (g, p_defer)
    else:
      law, m = _law(*probs[g], kind, alpha or 0.0)
      assert m.smallest() > MARGIN, (kind, g, "near-tie")
    pval = chi_square_pvalue(res.tokens[group == g], law)
    assert pval > P_MIN, f"{method}[{rule}] prompt {g}: p={pval:.2e}"


def _colab_token_v3_loop(q, p, alpha, n, seed):
  """The authors' colab loop, written again in plain numpy (REFERENCES.md):
  both models run at every step and the drafter drafts ONE token (γ = 1).
  The token_v3 rule decides on the unscaled distributions (here T = 1, so they
  are the scaled ones): the drafter may keep A = {v : p(v) ≥ (1 − α)·max p};
  the target is π = q·1[A] + p·(1 − q(A)). The drafted y ~ q is accepted with
  probability min(1, π(y)/q(y)); otherwise the step emits z ~ norm(max(π − q, 0)).
  `q`, `p` map a generated context to the model's next-token distribution.
  Returns [n, MC_NEW] int tokens, 0 after EOS."""
  rng = np.random.default_rng(seed)
  out = np.zeros((n, MC_NEW), np.int64)
  for row in range(n):
    ctx = ()
    for t in range(MC_NEW):
      if EOS in ctx:
        break
      qc, pc = q[ctx], p[ctx]
      keep = pc >= (1.0 - alpha) * pc.max()
      target = qc * keep + pc * (1.0 - qc[keep].sum())
      y = rng.choice(V, p=qc)
      if rng.random() >= min(1.0, target[y] / qc[y]):
        residual = np.maximum(target - qc, 0.0)
        y = rng.choice(V, p=residual / residual.sum())
      out[row, t] = y
      ctx += (int(y),)
  return out


def _homogeneity_pvalue(a, b):
  """Chi-square test that two samples of sequences come from one law (2 × K
  contingency table; sequences seen fewer than 10 times in both together
  share one cell)."""
  seqs, inverse = np.unique(np.concatenate([a, b]), axis=0, return_inverse=True)
  inverse = inverse.reshape(-1)
  counts = np.stack([np.bincount(inverse[:len(a)], minlength=len(seqs)),
                     np.bincount(inverse[len(a):], minlength=len(seqs))])
  common = counts.sum(0) >= 10
  table = np.concatenate([counts[:, common], counts[:, ~common].sum(1, keepdims=True)], 1)
  table = table[:, table.sum(0) > 0]
  assert table.shape[1] > 20, "too few distinct sequences for the test to mean much"
  return scipy.stats.chi2_contingency(table)[1]


@pytest.mark.slow
def test_spec_cascade_gamma1_token_v3_matches_the_authors_loop(mc_pair):
  """Our batched kernel at γ = 1 (token_v3, α = 0.5, T = 1) against the
  colab's step-by-step loop, by samples alone: no enumerated law in between."""
  drafter, verifier = mc_pair
  prompt, alpha = MC_PROMPTS[0], 0.5
  q, p = _next_token_probs(drafter, prompt), _next_token_probs(verifier, prompt)
  res = scj.generate(drafter, verifier, np.tile(np.array(prompt, np.int32), (N, 1)),
                     method="spec_cascade", rule="token_v3", alpha=alpha,
                     num_draft_tokens=1, temperature=1.0, max_new_tokens=MC_NEW,
                     rng=jax.random.PRNGKey(23))
  ours = np.asarray(res.tokens)[:, :MC_NEW]
  theirs = _colab_token_v3_loop(q, p, alpha, N, seed=23)
  # The rule must matter: the sequence law it gives is far (TV 0.24) from
  # plain speculative decoding's (π = p), so a loop that ignored it would fail.
  law_rule, _ = _law(q, p, "token_v3", alpha)
  law_p, _ = _law(q, p, "speculative", 0.0)
  tv = 0.5 * sum(abs(law_rule.get(s, 0.0) - law_p.get(s, 0.0)) for s in {*law_rule, *law_p})
  assert tv > 0.1, tv
  pval = _homogeneity_pvalue(ours, theirs)
  assert pval > P_MIN, f"our γ = 1 token_v3 differs from the colab loop: p={pval:.2e}"
