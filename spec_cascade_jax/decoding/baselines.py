"""Sequential baselines with their real cost structure (docs/design.md §3.3).

- autoregressive: one model, one token per step (drafter-only, verifier-only).
  Verifier-only is the latency reference for every other method.
- token_cascade (chow): the drafter generates; at a deferred position the
  verifier catches up on the tokens it has not seen in chunks of γ+1, then
  π = p there. Verifier calls are sequential and counted.
- oracle_cascade: both models step every token, so any rule can be evaluated;
  a quality reference (one sequential verifier call per token).
- seq_cascade: the drafter decodes the whole output; rows whose sequence
  confidence (mean or min of the per-token max q°) is below 1 − α are decoded
  again by the verifier.

All share the per-position target math of targets.py with the speculative
kernel, so TokenCascade[rule] and SpecCascade[rule] have one distribution.
Each one-token loop uses one fold_in per row and step (loop.round_uniforms); the
state and bookkeeping they share with the other loops is loop.py's.
`eos_ids` (static) and `input_lengths` ([B] or None) as in kernel.py.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from spec_cascade_jax.decoding import loop, sampling, targets
from spec_cascade_jax.decoding.loop import EOS, DecodeParams


@flax.struct.dataclass
class LoopState:
  """What the one-token-per-step loops carry: the loop core's cursor, the
  models' caches and the loop's own extras (verifier cursor, confidence sums)."""
  cursor: loop.Cursor
  caches: Any           # tuple of model caches
  extra: Any


def _start(input_ids, models, max_new_tokens: int, window: int, extra, done=None,
           input_lengths=None) -> LoopState:
  """The first state of a loop committing one token per step whose caches are
  read `window` positions ahead (token_cascade's catch-up chunk; 1 otherwise)."""
  cache_len, seq_len = loop.buffer_lengths(max_new_tokens, window)
  return LoopState(
      cursor=loop.Cursor.start(input_ids.shape[0], seq_len, done),
      caches=tuple(loop.init_cache(m, input_ids, cache_len, input_lengths) for m in models),
      extra=extra)


def _advance(s: LoopState, token, caches, extra, max_new_tokens: int,
             eos_ids: tuple[int, ...], **increments) -> LoopState:
  """Commits one token per active row; adds increments[name] [B] for active rows."""
  cursor, _ = s.cursor.advance(token[:, None], jnp.ones_like(s.cursor.length),
                               max_new_tokens, eos_ids, **increments)
  return LoopState(cursor=cursor, caches=caches, extra=extra)


def _one_step(model, cache, token, length, params: DecodeParams, top_k: int):
  """token [B] at position length -> (scaled probs [B, V], unscaled [B, V], cache)."""
  logits, cache = model.step(token[:, None], cache, length)
  probs, unscaled = sampling.distributions(logits[:, 0], params.temperature, top_k,
                                           params.top_p)
  return probs, unscaled, cache


def autoregressive(model, input_ids, params: DecodeParams, rng, *, top_k: int,
                   max_new_tokens: int, stream: int = 1, done=None,
                   confidences: bool = True, eos_ids: tuple[int, ...] = (EOS,),
                   input_lengths=None):
  """Plain decoding with one model.

  Returns (tokens [B, max_new] int32, steps [B] int32 (= tokens committed, as
  each step commits one), confidence sums and minima [B] float32 of the
  per-token max q° over committed tokens; with `confidences` False (static)
  these stay 0 and 1, and greedy steps skip the softmax). Rows with
  done[b] = True at the start are not decoded (their tokens are 0, steps 0).
  """
  batch = input_ids.shape[0]
  keys = loop.row_keys(rng, batch, stream)
  extra = (jnp.zeros((batch,), jnp.float32), jnp.ones((batch,), jnp.float32))

  def body(s: LoopState):
    last = s.cursor.last_token()
    u = loop.round_uniforms(keys, s.cursor.step, 1)[:, 0]
    if not confidences:
      with jax.named_scope("step"):  # labels for profiles (benchmarks/round_profile.py)
        logits, cache = model.step(last[:, None], s.caches[0], s.cursor.length)
      with jax.named_scope("sample"):
        token = sampling.next_token(u, logits[:, 0], params.temperature, top_k,
                                    params.top_p, params.all_greedy())
      return _advance(s, token, (cache,), s.extra, max_new_tokens, eos_ids, drafter_steps=1)
    with jax.named_scope("step"):
      probs, unscaled, cache = _one_step(model, s.caches[0], last, s.cursor.length, params,
                                         top_k)
    with jax.named_scope("sample"):
      token = sampling.sample_or_argmax(u, probs, params.all_greedy())
      conf = jnp.max(unscaled, axis=-1)
    active = s.cursor.active
    conf_sum = s.extra[0] + jnp.where(active, conf, 0.0)
    conf_min = jnp.where(active, jnp.minimum(s.extra[1], conf), s.extra[1])
    return _advance(s, token, (cache,), (conf_sum, conf_min), max_new_tokens, eos_ids,
                    drafter_steps=1)

  with jax.named_scope("encode"):
    state = _start(input_ids, (model,), max_new_tokens, 1, extra, done, input_lengths)
  state = loop.run(state, body)
  steps = state.cursor.stats.drafter_steps
  return state.cursor.tokens(max_new_tokens), steps, state.extra[0], state.extra[1]


def single_model(model, input_ids, params: DecodeParams, rng, *, top_k: int,
                 max_new_tokens: int, is_verifier: bool, eos_ids: tuple[int, ...] = (EOS,),
                 input_lengths=None):
  """Drafter-only or verifier-only decoding with its stats."""
  tokens, steps, _, _ = autoregressive(model, input_ids, params, rng, top_k=top_k,
                                       max_new_tokens=max_new_tokens, confidences=False,
                                       eos_ids=eos_ids, input_lengths=input_lengths)
  stats = loop.Stats.zeros(input_ids.shape[0]).replace(num_tokens=steps)
  if is_verifier:  # every token is the verifier's: a call and a deferral each
    stats = stats.replace(rounds=steps, sequential_verifier_calls=steps, deferrals=steps)
  else:
    stats = stats.replace(drafter_steps=steps)
  return tokens, stats.as_dict()


def oracle_cascade(drafter, verifier, input_ids, params: DecodeParams, rng, *,
                   target_fn, top_k: int, max_new_tokens: int,
                   eos_ids: tuple[int, ...] = (EOS,), input_lengths=None):
  """Both models every token; the token is sampled from π (any rule)."""
  batch = input_ids.shape[0]
  keys = loop.row_keys(rng, batch, stream=0)

  def body(s: LoopState):
    last = s.cursor.last_token()
    q, q0, dcache = _one_step(drafter, s.caches[0], last, s.cursor.length, params, top_k)
    p, p0, vcache = _one_step(verifier, s.caches[1], last, s.cursor.length, params, top_k)
    pi, defer = target_fn(q, p, q0, p0, params.alpha)
    u = loop.round_uniforms(keys, s.cursor.step, 2)
    greedy = params.all_greedy()
    x = sampling.sample_or_argmax(u[:, 0], q, greedy)  # the drafter's proposal: the statistic
    token = sampling.sample_or_argmax(u[:, 1], pi, greedy)
    deferred = jnp.take_along_axis(defer, x[:, None], axis=1)[:, 0]
    return _advance(s, token, (dcache, vcache), None, max_new_tokens, eos_ids,
                    drafter_steps=1, rounds=1, sequential_verifier_calls=1,
                    deferrals=deferred)

  state = _start(input_ids, (drafter, verifier), max_new_tokens, 1, None,
                 input_lengths=input_lengths)
  state = loop.run(state, body)
  return state.cursor.tokens(max_new_tokens), state.cursor.stats.as_dict()


def _catch_up(verifier, vcache, seq, vlen, length, need, chunk: int):
  """Runs the verifier until it has consumed positions ..length for rows in `need`.

  vlen [B]: the verifier cache is valid for slots < vlen. Each call feeds
  seq[vlen : vlen + chunk] at position vlen; tokens past `length` are padding
  whose K/V land in slots ≥ the new vlen, masked and later replaced.
  Returns (vcache, vlen, p_logits [B, V] at position length + 1, calls [B]).
  """
  batch = seq.shape[0]

  def cond(c):
    _, vlen, _, _ = c
    return jnp.any(need & (vlen <= length))

  def body(c):
    vcache, vlen, p_logits, calls = c
    busy = need & (vlen <= length)
    tokens = jax.vmap(lambda row, start: jax.lax.dynamic_slice(row, (start,), (chunk,)))(
        seq, vlen)                                                  # [B, chunk]
    logits, vcache = verifier.step(tokens, vcache, vlen)           # [B, chunk, V]
    offset = length - vlen
    reached = busy & (offset < chunk)
    at = jnp.take_along_axis(logits, jnp.clip(offset, 0, chunk - 1)[:, None, None],
                             axis=1)[:, 0]                          # [B, V]
    p_logits = jnp.where(reached[:, None], at, p_logits)
    vlen = jnp.where(busy, jnp.minimum(vlen + chunk, length + 1), vlen)
    return vcache, vlen, p_logits, calls + busy.astype(jnp.int32)

  vocab = verifier.vocab_size
  init = (vcache, vlen, jnp.zeros((batch, vocab), jnp.float32),
          jnp.zeros((batch,), jnp.int32))
  return jax.lax.while_loop(cond, body, init)


def token_cascade(drafter, verifier, input_ids, params: DecodeParams, rng, *,
                  top_k: int, max_new_tokens: int, chunk: int,
                  eos_ids: tuple[int, ...] = (EOS,), input_lengths=None):
  """TokenCascade[chow]: the verifier runs only where Chow's rule defers.

  The verifier's cache lags behind the drafter: `extra` holds its cursor vlen.
  """
  batch = input_ids.shape[0]
  keys = loop.row_keys(rng, batch, stream=0)

  def body(s: LoopState):
    last = s.cursor.last_token()
    q, q0, dcache = _one_step(drafter, s.caches[0], last, s.cursor.length, params, top_k)
    defer = targets.chow_defer(q0, params.alpha) & s.cursor.active
    vcache, vlen, p_logits, calls = _catch_up(verifier, s.caches[1], s.cursor.seq, s.extra,
                                              s.cursor.length, defer, chunk)
    p, p0 = sampling.distributions(p_logits, params.temperature, top_k, params.top_p)
    # Where no verifier call happened p is a placeholder; chow's π = q there.
    pi, _ = targets.chow(q, p, q0, p0, params.alpha)
    token = sampling.sample_or_argmax(loop.round_uniforms(keys, s.cursor.step, 1)[:, 0], pi,
                                      params.all_greedy())
    return _advance(s, token, (dcache, vcache), vlen, max_new_tokens, eos_ids,
                    drafter_steps=1, rounds=calls,
                    sequential_verifier_calls=calls, deferrals=defer)

  # The catch-up reads seq[vlen : vlen + chunk] with vlen ≤ max_new_tokens.
  state = _start(input_ids, (drafter, verifier), max_new_tokens, chunk,
                 jnp.zeros((batch,), jnp.int32), input_lengths=input_lengths)
  state = loop.run(state, body)
  return state.cursor.tokens(max_new_tokens), state.cursor.stats.as_dict()


def seq_cascade(drafter, verifier, input_ids, params: DecodeParams, rng, *,
                top_k: int, max_new_tokens: int, confidence: str,
                eos_ids: tuple[int, ...] = (EOS,), input_lengths=None):
  """Sequence-level Chow cascade: defer a row iff its confidence < 1 − α.

  confidence = mean (or min) over the drafter's committed tokens (EOS included)
  of max q°. Deferred rows are decoded from scratch by the verifier with an
  independent PRNG stream, so the output distribution is the mixture
  P_q(y)·1[conf(y) ≥ 1 − α] + P(defer)·P_p(y).
  """
  d_tokens, d_steps, conf_sum, conf_min = autoregressive(
      drafter, input_ids, params, rng, top_k=top_k, max_new_tokens=max_new_tokens,
      stream=1, eos_ids=eos_ids, input_lengths=input_lengths)
  if confidence == "mean":
    conf = conf_sum / jnp.maximum(d_steps, 1).astype(jnp.float32)
  else:
    conf = conf_min
  defer = conf < 1.0 - params.alpha
  v_tokens, v_steps, _, _ = autoregressive(
      verifier, input_ids, params, rng, top_k=top_k, max_new_tokens=max_new_tokens,
      stream=2, done=~defer, eos_ids=eos_ids, input_lengths=input_lengths)
  tokens = jnp.where(defer[:, None], v_tokens, d_tokens)
  stats = loop.Stats.zeros(d_steps.shape[0]).replace(
      rounds=v_steps, drafter_steps=d_steps, deferrals=defer.astype(jnp.int32),
      sequential_verifier_calls=v_steps, num_tokens=jnp.where(defer, v_steps, d_steps))
  return tokens, stats.as_dict()
