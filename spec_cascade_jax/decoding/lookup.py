"""Prompt-lookup (n-gram) speculative decoding: drafts copied, not generated.

The draft comes from the text itself (Saxena 2023, transformers'
`prompt_lookup_num_tokens`): when the last `n` committed tokens occurred
before, the tokens that followed that occurrence are proposed. The search
covers the generated prefix first (its most recent earlier occurrence), then
the source `input_ids` (its last occurrence): T5 shares one vocabulary
between encoder and decoder, so names, placeholders and URLs of the input can
be copied. In the generated prefix the continuation is repeated with the
match's period: an output that has run into a repetition loop is drafted in
full, which is where a small verifier spends many of its tokens.

Verification is the speculative kernel's with a deterministic draft: the
"drafter distribution" is one-hot at each drafted token, so (docs/design.md
§3.4, target π = p) x_j is accepted with probability p_j(x_j), and a
rejection at j emits z ~ norm(max(0, p_j − 1[x_j])) = p_j with x_j removed,
renormalised; all γ accepted emits the bonus z ~ p_{γ+1}. The committed
tokens are therefore distributed exactly as verifier-only decoding's, and
greedy decoding yields the verifier's greedy output token for token.

A round where no row has a match makes a plain one-token verifier step (one
token, no chunk), so text without repetition costs about what verifier-only
decoding does. In a batch, rows without a match ride in the chunk of the
others: they take its first position's distribution, one token, as a
verifier step would (their drafts are neither counted nor tested).

Decoder-only LMs: the source is the prompt (input_lengths [B] marks its end
where token 0 is a real token); EOS ids as in kernel.py.

Randomness: row b's round r draws fold_in(fold_in(fold_in(rng, 0), b), r)
uniforms: γ for the acceptance tests and one for the emitted token.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from spec_cascade_jax.decoding import loop, sampling, targets
from spec_cascade_jax.decoding.loop import EOS, DecodeParams


def _match_ends(hay, key):
  """hay [B, H], key [B, n] -> [B, H] bool: hay[b, e-n+1 .. e] == key[b] (e ≥ n-1)."""
  width, n = hay.shape[1], key.shape[1]
  match = jnp.arange(width)[None, :] >= n - 1
  for i in range(n):
    shift = n - 1 - i  # compare hay[e - shift] with key[i]
    shifted = jnp.pad(hay, ((0, 0), (shift, 0)))[:, :width]
    match = match & (shifted == key[:, i:i + 1])
  return match


def _latest(match):
  """[B, H] bool -> (index of the last True [B] int32 (0 if none), any [B] bool)."""
  idx = jnp.arange(match.shape[1], dtype=jnp.int32)[None, :]
  return jnp.max(jnp.where(match, idx, 0), axis=1), jnp.any(match, axis=1)


def ngram_draft(seq, length, source, *, ngram: int, gamma: int, source_valid=None):
  """The draft of one round.

  Args:
    seq: [B, W] int32 decoder tokens; seq[:, 0] is the start token, generated
      token t sits at position t + 1 (kernel.py's layout).
    length: [B] int32 generated tokens committed.
    source: [B, S] int32 input ids, 0 = pad.
    ngram: static n, the number of trailing tokens that must match.
    gamma: static number of tokens to draft.
    source_valid: [B, S] bool, the real (non-pad) source tokens; None:
      source != 0.
  Returns:
    draft [B, γ] int32; found [B] bool (False: no match, the draft is the last
    token repeated).
  """
  width = seq.shape[1]
  pos = length[:, None] - (ngram - 1) + jnp.arange(ngram)[None, :]     # [B, n]
  key = jnp.take_along_axis(seq, jnp.clip(pos, 0, width - 1), axis=1)
  has_key = length >= ngram                    # the key lies within generated tokens
  # Generated prefix: the match ends at e with n ≤ e < length (the window starts
  # at position ≥ 1, after the start token; e < length leaves a continuation).
  e_idx = jnp.arange(width)[None, :]
  in_prefix = (e_idx >= ngram) & (e_idx < length[:, None])
  e_gen, found_gen = _latest(_match_ends(seq, key) & in_prefix)
  period = jnp.maximum(length - e_gen, 1)
  i = jnp.arange(gamma)[None, :]
  gen_pos = e_gen[:, None] + 1 + i % period[:, None]
  gen_draft = jnp.take_along_axis(seq, jnp.clip(gen_pos, 0, width - 1), axis=1)
  # Source: a match followed by at least one real (non-pad) token.
  src_len = source.shape[1]
  valid = source != 0 if source_valid is None else source_valid
  in_source = jnp.pad(valid[:, 1:], ((0, 0), (0, 1)))                 # source[e + 1] real
  e_src, found_src = _latest(_match_ends(source, key) & in_source)
  src_pos = e_src[:, None] + 1 + i
  src_draft = jnp.take_along_axis(source, jnp.minimum(src_pos, src_len - 1), axis=1)
  src_draft = jnp.where(src_pos < src_len, src_draft, 0)   # past the source's end: pad
  found = has_key & (found_gen | found_src)
  draft = jnp.where(found_gen[:, None], gen_draft, src_draft)
  draft = jnp.where(found[:, None], draft, loop.last_token(seq, length)[:, None])
  return draft.astype(jnp.int32), found


def accept_one_hot(x, p, u_accept, u_residual, matched):
  """The acceptance test of a deterministic draft (q_j = one-hot at x_j).

  x [B, γ] int32; p [B, γ+1, V] verifier distributions; u_accept [B, γ];
  u_residual [B]; matched [B] bool: rows without a match take no draft (n = 0)
  and sample z ~ p_1, a plain verifier step. Greedy rows have one-hot p, so
  they sample its argmax (where every row is greedy, `accept_greedy` is the
  cheaper equivalent).
  Returns (n [B] accepted drafts, z [B] the emitted token).
  """
  gamma = x.shape[1]
  p_x = jnp.take_along_axis(p[:, :gamma], x[..., None], axis=-1)[..., 0]   # [B, γ]
  ok = u_accept < p_x                     # probability min(1, p(x) / 1) = p(x)
  n = jnp.sum(jnp.cumprod(ok.astype(jnp.int32), axis=1), axis=1)
  n = jnp.where(matched, n, 0)
  p_n = jnp.take_along_axis(p, n[:, None, None], axis=1)[:, 0]             # [B, V]
  x_n = jnp.take_along_axis(x, jnp.minimum(n, gamma - 1)[:, None], axis=1)[:, 0]
  q_n = jax.nn.one_hot(x_n, p.shape[-1], dtype=p.dtype)
  rejected = matched & (n < gamma)
  dist = jnp.where(rejected[:, None], targets.residual(p_n, q_n), p_n)
  return n.astype(jnp.int32), sampling.sample(u_residual, dist)


def accept_greedy(x, logits, matched):
  """`accept_one_hot` where every row is greedy: the drafts that equal the
  verifier's argmax, then its argmax at the first other position; from the
  logits [B, γ+1, V] alone (no softmax, no one-hot array).
  Returns (n [B] accepted drafts, z [B] the emitted token)."""
  best = sampling.argmax(logits)                                           # [B, γ+1]
  n = jnp.sum(jnp.cumprod((x == best[:, :-1]).astype(jnp.int32), axis=1), axis=1)
  n = jnp.where(matched, n, 0)
  return n.astype(jnp.int32), jnp.take_along_axis(best, n[:, None], axis=1)[:, 0]


@flax.struct.dataclass
class LookupState:
  """The loop core's cursor (its buffer [B, max_new + γ + 2]), the next
  round's draft and the verifier's cache."""
  cursor: loop.Cursor
  draft: jax.Array       # [B, γ] int32 the next round's draft (ngram_draft)
  found: jax.Array       # [B] bool the draft comes from a match
  cache: object          # the verifier's cache

  def matched(self):
    """[] bool: some active row has a match (the next round is a chunk)."""
    return jnp.any(self.found & self.cursor.active)


def lookup_round(state: LookupState, verifier, source, params: DecodeParams, keys, *,
                 chunk: bool, ngram: int, gamma: int, top_k: int,
                 max_new_tokens: int, eos_ids: tuple[int, ...] = (EOS,),
                 source_valid=None) -> LookupState:
  """One round for every row: the (γ+1)-token chunk on the drafts (`chunk`,
  static), or one verifier step; then the next round's draft."""
  cur, x, found = state.cursor, state.draft, state.found
  length, last = cur.length, cur.last_token()
  u = loop.round_uniforms(keys, cur.step, gamma + 1)
  all_greedy = params.all_greedy()
  if chunk:
    with jax.named_scope("verify"):
      tokens = jnp.concatenate([last[:, None], x], axis=1)             # [B, γ+1]
      logits, cache = verifier.step(tokens, state.cache, length)

    def general(lg, uu):
      p, _ = sampling.distributions(lg, params.temperature[:, None], top_k,
                                    params.top_p[:, None])
      return accept_one_hot(x, p, uu[:, :gamma], uu[:, gamma], found)

    with jax.named_scope("accept"):
      n, z = jax.lax.cond(all_greedy, lambda lg, uu: accept_greedy(x, lg, found), general,
                          logits, u)
  else:
    with jax.named_scope("step"):
      logits, cache = verifier.step(last[:, None], state.cache, length)
    with jax.named_scope("sample"):
      n = jnp.zeros_like(length)
      z = sampling.next_token(u[:, gamma], logits[:, 0], params.temperature, top_k,
                              params.top_p, all_greedy)
  with jax.named_scope("commit"):
    j = jnp.arange(gamma + 1)[None, :]
    window = jnp.where(j < n[:, None], jnp.pad(x, ((0, 0), (0, 1))), z[:, None])
    new, count = cur.advance(window, n + 1, max_new_tokens, eos_ids, rounds=1,
                             verified_tokens=gamma + 1 if chunk else 1)
    if chunk:
      # Rows without a match take one token; their filler drafts are not
      # counted. Drafts accepted past an EOS (or max_new_tokens) are wasted.
      drafts, accepted = gamma * found.astype(jnp.int32), jnp.minimum(n, count)
      new = new.replace(stats=new.stats.add(cur.active, draft_tokens=drafts,
                                            accepted=accepted,
                                            wasted_drafts=drafts - accepted))
  with jax.named_scope("draft"):
    draft, new_found = ngram_draft(new.seq, new.length, source, ngram=ngram, gamma=gamma,
                                   source_valid=source_valid)
  return LookupState(cursor=new, draft=draft, found=new_found, cache=cache)


def lookup_decode(verifier, input_ids, params: DecodeParams, rng, *, ngram: int,
                  gamma: int, top_k: int, max_new_tokens: int,
                  eos_ids: tuple[int, ...] = (EOS,), input_lengths=None):
  """Prompt-lookup speculative decoding with the verifier alone. Call inside jit.

  The loop alternates two inner while loops: one-token steps while no active
  row has a match, then chunk rounds while some row has one. (A `lax.cond`
  choosing per round made XLA:CPU copy the self-attention cache in and out
  of the conditional every round: 4% of a round here.)

  Returns tokens [B, max_new_tokens] int32 and stats {name: [B] int32}
  (loop.STAT_NAMES; drafter_steps and deferrals stay 0).
  """
  batch = input_ids.shape[0]
  # A chunk round commits up to γ + 1 tokens, as the speculative kernel's.
  cache_len, seq_len = loop.buffer_lengths(max_new_tokens, gamma + 1)
  with jax.named_scope("encode"):
    cache = loop.init_cache(verifier, input_ids, cache_len, input_lengths)
  source = input_ids.astype(jnp.int32)
  source_valid = None if input_lengths is None else (
      jnp.arange(source.shape[1])[None, :] < input_lengths[:, None])
  cursor = loop.Cursor.start(batch, seq_len)
  draft, found = ngram_draft(cursor.seq, cursor.length, source, ngram=ngram, gamma=gamma,
                             source_valid=source_valid)
  state = LookupState(cursor=cursor, draft=draft, found=found, cache=cache)
  keys = loop.row_keys(rng, batch, stream=0)

  def rounds(chunk):
    return lambda s: lookup_round(s, verifier, source, params, keys, chunk=chunk,
                                  ngram=ngram, gamma=gamma, top_k=top_k,
                                  max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                                  source_valid=source_valid)

  def body(s):
    s = loop.run(s, rounds(False), lambda s: loop.busy(s) & ~s.matched())
    return loop.run(s, rounds(True), lambda s: loop.busy(s) & s.matched())

  state = loop.run(state, body)
  return state.cursor.tokens(max_new_tokens), state.cursor.stats.as_dict()
