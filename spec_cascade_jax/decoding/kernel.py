"""The speculative kernel: GenSpecSample (docs/design.md §3.1) in one while_loop.

Decoder positions (models/protocol.py): position 0 holds the start token 0,
position t + 1 holds generated token t. Each row b keeps its own cursor
`length[b]` = number of generated tokens committed; its last committed token
sits at position length[b] (the start token when length[b] == 0), and both
models' caches are valid for slots < length[b]. No row waits for another: rows
advance by their own accepted counts (t5x-style per-row cursors).

One round, for every row (rows already done compute too, and are masked):
  1. drafter: γ+1 one-token steps (unrolled; a `lax.scan` for long drafts).
     Step i feeds token t_i at position length + i (t_0 = last committed
     token, t_i = x_i) and returns q_{i+1}; x_{i+1} ~ q_{i+1}. Step γ gives
     q_{γ+1} for the bonus position (its sample x_{γ+1} only feeds the
     deferral statistic) and leaves the drafter cache filled through slot
     length + γ.
  2. verifier: ONE chunk call on [t_0, x_1 .. x_γ] at position length -> p_1 .. p_{γ+1}.
  3. π_j = target(q_j, p_j, q°_j, p°_j, α) for j = 1..γ+1; x_j is accepted iff
     u_j·q_j(x_j) < π_j(x_j) (probability min(1, π_j(x_j)/q_j(x_j))), left to
     right, stopping at the first rejection; n = number accepted. On a rejection
     at j = n+1 emit z ~ norm(max(0, π_j − q_j)); if all γ are accepted emit the
     bonus z ~ π_{γ+1}.
  4. commit x_1 .. x_n, z (truncated after an EOS id and at max_new_tokens;
     zeros after); length += committed count. The caches' valid length becomes
     the new length: rollback is metadata only; stale K/V slots are masked on
     read and REPLACED by the next round's writes.

Worked example (γ = 3; vocabulary a, b, c, d = ids 0..3; replayed by
tests/test_kernel.py::test_docstring_round_example):

    draft x = [a, b, c]
    q_1 = [.6 .2 .1 .1]   π_1 = [.5 .2 .1 .2]    u_1 = .5: .5·q(a)=.30 < π(a)=.5 -> accept a
    q_2 = [.1 .7 .1 .1]   π_2 = [.1 .8 .05 .05]  u_2 = .9: .9·q(b)=.63 < π(b)=.8 -> accept b
    q_3 = [.1 .1 .6 .2]   π_3 = [.1 .1 .2 .6]    u_3 = .5: .5·q(c)=.30 ≥ π(c)=.2 -> reject c
    n = 2; residual norm(max(0, π_3 − q_3)) = norm([0 0 0 .4]) = [0 0 0 1] -> z = d
    committed: [a, b, d]; length += 3; q_4/π_4 (bonus) unused this round.

EOS ids and prompt lengths (models/protocol.py). `eos_ids` is a static
tuple (T5: (1,); an LM's own ids, e.g. Llama 3's 128001; empty: no EOS);
`generate` resolves it from the models. `input_lengths` [B] (or None: the
models' own pad convention, T5's 0 = pad) is handed to `init_cache` only when
given, so models with the two-argument `init_cache` keep working.

Randomness: row b's round r uses fold_in(fold_in(fold_in(rng, stream), b), r)
for all its uniforms (γ+1 draft, γ accept, 1 residual), so a row's samples
depend only on (rng, its row index, its own history): the same row decoded in
another batch (at the same index) draws the same uniforms. Greedy decoding
(temperature 0) does not depend on the uniforms at all and is batch invariant;
a batch of greedy rows does not compute them.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from spec_cascade_jax.decoding import drafting, loop, sampling, targets
from spec_cascade_jax.decoding.loop import EOS, DecodeParams


def accept_and_correct(x, q, pi, u_accept, u_residual, all_greedy=False, d=None):
  """The acceptance test and correction of GenSpecSample.

  Args:
    x: [B, γ] int32 drafted tokens, x_j ~ q_j.
    d: [B] int32 in [0, γ], the drafts row b made (drafting.py), or None: γ.
      Drafts past d_b are not tested; if all d_b are accepted the bonus z is
      sampled from π_{d_b+1}.
    q: [B, γ+1, V] drafter distributions (position γ+1: the bonus position).
    pi: [B, γ+1, V] targets.
    u_accept: [B, γ] uniforms; u_residual: [B] uniform.
    all_greedy: [] bool (traced): every row is greedy. q and p are then
      one-hot, so is every target of targets.py (each one mixes or selects q
      and p) and the residual, and z is its argmax: the inverse CDF is skipped.
  Returns:
    n: [B] int32 accepted drafts (the leading run of u_j·q_j(x_j) < π_j(x_j));
    z: [B] int32 the token emitted at position n+1: a sample of
       norm(max(0, π − q)) there if n < γ, of π_{γ+1} if n == γ.
  """
  gamma = x.shape[1]
  q_x = jnp.take_along_axis(q[:, :gamma], x[..., None], axis=-1)[..., 0]    # [B, γ]
  pi_x = jnp.take_along_axis(pi[:, :gamma], x[..., None], axis=-1)[..., 0]  # [B, γ]
  # u·q < π is min(1, π/q) without a division (q(x) > 0 as x ~ q).
  ok = u_accept * q_x < pi_x
  if d is None:
    d = jnp.full(x.shape[:1], gamma, jnp.int32)
  else:
    ok = ok & (jnp.arange(gamma)[None, :] < d[:, None])
  n = jnp.sum(jnp.cumprod(ok.astype(jnp.int32), axis=1), axis=1)           # [B]
  # Only position n+1 is ever sampled: gather it first, so the residual is
  # computed on [B, V], not on all γ+1 positions.
  at_n = n[:, None, None]
  pi_n = jnp.take_along_axis(pi, at_n, axis=1)[:, 0]                        # [B, V]
  q_n = jnp.take_along_axis(q, at_n, axis=1)[:, 0]
  dist = jnp.where((n < d)[:, None], targets.residual(pi_n, q_n), pi_n)
  return n.astype(jnp.int32), sampling.sample_or_argmax(u_residual, dist, all_greedy)


@flax.struct.dataclass
class SpecState:
  """What the speculative while_loop carries: the loop core's cursor
  (loop.Cursor, its buffer [B, max_new + γ + 2]), both models' caches, and
  each row's draft length L [B] (the "heuristic" policy's; γ otherwise)."""
  cursor: loop.Cursor
  drafter_cache: Any
  verifier_cache: Any
  draft_len: jax.Array


def spec_round(state: SpecState, drafter, verifier, params: DecodeParams, keys, *,
               target_fn, gamma: int, top_k: int, max_new_tokens: int,
               eos_ids: tuple[int, ...] = (EOS,), policy: str = "constant") -> SpecState:
  """One speculative round for every row (see the module docstring)."""
  cur = state.cursor
  length, last = cur.length, cur.last_token()                           # [B]
  all_greedy = params.all_greedy()
  # A greedy batch draws nothing: its uniforms are not computed.
  u = jax.lax.cond(all_greedy,
                   lambda k, r: jnp.zeros((k.shape[0], 2 * gamma + 2), jnp.float32),
                   lambda k, r: loop.round_uniforms(k, r, 2 * gamma + 2),
                   keys, cur.step)                                         # [B, 2γ+2]
  u_draft, u_accept, u_res = u[:, :gamma + 1], u[:, gamma + 1:2 * gamma + 1], u[:, -1]
  # q° and p° are computed only where the target reads them (or, for q°, the
  # draft policy's threshold).
  unscaled = target_fn not in targets.IGNORES_UNSCALED
  # The named scopes label the HLO ops of each phase for profiles
  # (benchmarks/round_profile.py); they change nothing else.
  with jax.named_scope("draft"):
    if policy == "constant":
      x, q, q0, dcache = drafting.draft_all(drafter, state.drafter_cache, last, length,
                                            u_draft, params, top_k, all_greedy, unscaled)
      d, width = jnp.full_like(length, gamma), None
    else:
      limit = drafting.limits(policy, gamma, state.draft_len, cur.active)
      threshold = params.draft_threshold if policy in ("confidence", "cumulative") else None
      x, q, q0, dcache, d = drafting.draft_adaptive(
          drafter, state.drafter_cache, last, length, u_draft, params, top_k, all_greedy,
          limit, threshold, cumulative=policy == "cumulative", unscaled=unscaled)
      width = jnp.max(d) + 1                   # the batch's longest draft, + the bonus
  with jax.named_scope("verify"):
    chunk = jnp.concatenate([last[:, None], x[:, :gamma]], axis=1)       # [B, γ+1]
    vlogits, vcache = drafting.verify_chunk(verifier, chunk, state.verifier_cache, length,
                                            width)                        # [B, γ+1, V]
    temp, top_p = params.temperature[:, None], params.top_p[:, None]     # [B, 1]
    p, p0 = sampling.distributions(vlogits, temp, top_k, top_p, unscaled)
  with jax.named_scope("target"):
    pi, defer = target_fn(q, p, q0, p0, params.alpha[:, None])
  with jax.named_scope("accept"):
    n, z = accept_and_correct(x[:, :gamma], q, pi, u_accept, u_res, all_greedy,
                              None if width is None else d)
  with jax.named_scope("commit"):
    j = jnp.arange(gamma + 1)[None, :]
    window = jnp.where(j < n[:, None], x, z[:, None])                    # [B, γ+1]
    new, count = cur.advance(window, n + 1, max_new_tokens, eos_ids)
  # Counted for the rows active before the round, over what was committed:
  # drafts accepted past an EOS (or max_new_tokens) are wasted, not accepted.
  accepted = jnp.minimum(n, count)
  deferred = jnp.take_along_axis(defer, x[..., None], axis=-1)[..., 0]  # [B, γ+1]
  deferrals = jnp.sum(deferred & (j < count[:, None]), axis=1)           # (count 0: done)
  new = new.replace(stats=new.stats.add(
      cur.active, rounds=1, drafter_steps=d + 1, draft_tokens=d, accepted=accepted,
      wasted_drafts=d - accepted, verified_tokens=gamma + 1 if width is None else width,
      deferrals=deferrals))
  draft_len = state.draft_len
  if policy == "heuristic":
    draft_len = drafting.next_length(draft_len, d, n, params.draft_schedule, gamma,
                                     cur.active)
  return SpecState(cursor=new, drafter_cache=dcache, verifier_cache=vcache,
                   draft_len=draft_len)


def spec_decode(drafter, verifier, input_ids, params: DecodeParams, rng, *,
                target_fn, gamma: int, top_k: int, max_new_tokens: int,
                eos_ids: tuple[int, ...] = (EOS,), input_lengths=None,
                policy: str = "constant"):
  """Speculative decoding of any target. Call inside jit.

  Args:
    drafter, verifier: models (pytrees) implementing the decoder-step protocol.
    input_ids: [B, S] int32, 0 = pad (or padded past input_lengths [B]).
    params: DecodeParams with [B] fields.
    rng: PRNG key.
    target_fn: a function of targets.py; gamma, top_k, max_new_tokens, eos_ids
      static.
    policy: the draft policy (drafting.py; static), its settings in `params`.
  Returns:
    tokens [B, max_new_tokens] int32, stats {name: [B] int32}.
  """
  batch = input_ids.shape[0]
  # A round commits up to γ + 1 tokens (positions length .. length + γ).
  cache_len, seq_len = loop.buffer_lengths(max_new_tokens, gamma + 1)
  with jax.named_scope("encode"):
    caches = (loop.init_cache(drafter, input_ids, cache_len, input_lengths),
              loop.init_cache(verifier, input_ids, cache_len, input_lengths))
  draft_len = (params.draft_schedule[:, 0] if policy == "heuristic"
               else jnp.full((batch,), gamma))
  state = SpecState(cursor=loop.Cursor.start(batch, seq_len), drafter_cache=caches[0],
                    verifier_cache=caches[1], draft_len=draft_len.astype(jnp.int32))
  keys = loop.row_keys(rng, batch, stream=0)

  def body(s):
    return spec_round(s, drafter, verifier, params, keys, target_fn=target_fn,
                      gamma=gamma, top_k=top_k, max_new_tokens=max_new_tokens,
                      eos_ids=eos_ids, policy=policy)

  state = loop.run(state, body)
  return state.cursor.tokens(max_new_tokens), state.cursor.stats.as_dict()
