"""The loop core: what every decode loop carries and does (docs/design.md §3.6).

The speculative kernel (kernel.py), the sequential baselines (baselines.py)
and prompt lookup (lookup.py) are while_loops over the same bookkeeping,
written once here:

  Cursor        round counter, output buffer, per-row lengths, done flags, Stats
  Cursor.advance  commits a window of tokens per row (cut after EOS and at
                max_new_tokens), adds the round's stats for the active rows
  Stats         the counters every method returns (STAT_NAMES), typed
  DecodeParams  the traced per-row settings, and `all_greedy`
  buffer_lengths  the sizes of the output buffer and the caches
  run           the while_loop over rows not yet done

Each loop adds only what is its own: its caches, drafts and extras.

Decoder positions (models/protocol.py): position 0 holds the start token 0,
position t + 1 holds generated token t. Each row b keeps its own cursor
`length[b]` = number of generated tokens committed; its last committed token
sits at position length[b] (the start token when length[b] == 0).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

EOS = 1  # T5's, and the default of models that do not say (protocol.py)


@flax.struct.dataclass
class DecodeParams:
  """Traced per-row decoding parameters (a sweep over them never recompiles)."""
  alpha: jax.Array        # [B] float32
  temperature: jax.Array  # [B] float32, 0 = greedy
  top_p: jax.Array        # [B] float32 in (0, 1]
  # The draft policy's settings (drafting.py); None where the policy has none.
  draft_threshold: jax.Array | None = None  # [B] float32: "confidence", "cumulative"
  draft_schedule: jax.Array | None = None   # [B, 3] int32 (start, grow, shrink): "heuristic"

  def all_greedy(self) -> jax.Array:
    """[] bool (traced): every row decodes greedily, so sampling is an argmax
    and a batch of greedy rows skips every inverse CDF without a recompile."""
    return jnp.all(self.temperature <= 0.0)


@flax.struct.dataclass
class Stats:
  """Per-row counters, each [B] int32 (docs/design.md §3.6 says what each counts).

  rounds: verifier calls (speculative rounds; sequential calls for baselines);
  drafter_steps: one-token drafter calls; draft_tokens: drafts proposed;
  accepted: drafts accepted by the test and committed (none past EOS or
  max_new_tokens); wasted_drafts: drafts proposed but not committed
  (draft_tokens - accepted); verified_tokens: tokens the verifier scored in
  its rounds' chunks (drafting methods; 0 for the sequential baselines);
  deferrals: positions (or rows, for seq_cascade) deferred to the verifier;
  sequential_verifier_calls: verifier calls made one after the other;
  num_tokens: generated tokens, EOS included.
  """
  rounds: jax.Array
  drafter_steps: jax.Array
  draft_tokens: jax.Array
  accepted: jax.Array
  wasted_drafts: jax.Array
  verified_tokens: jax.Array
  deferrals: jax.Array
  sequential_verifier_calls: jax.Array
  num_tokens: jax.Array

  @classmethod
  def zeros(cls, batch: int) -> "Stats":
    return cls(**{name: jnp.zeros((batch,), jnp.int32) for name in STAT_NAMES})

  def add(self, active, **increments) -> "Stats":
    """Adds increments[name] ([B] or scalar) to the rows where `active` [B] is set."""
    act = active.astype(jnp.int32)
    return self.replace(**{name: getattr(self, name) + act * jnp.asarray(inc, jnp.int32)
                           for name, inc in increments.items()})

  def as_dict(self) -> dict[str, jax.Array]:
    """{name: [B] int32}: what `generate` returns."""
    return {name: getattr(self, name) for name in STAT_NAMES}


STAT_NAMES = tuple(f.name for f in dataclasses.fields(Stats))


def buffer_lengths(max_new_tokens: int, window: int) -> tuple[int, int]:
  """(cache_len, seq_len) for a loop committing up to `window` tokens a round.

  A round reads or writes positions length .. length + window - 1 with length
  <= max_new_tokens (done rows keep stepping), so the caches need
  max_new_tokens + window slots and the output buffer, which also holds the
  start token at position 0, one more.
  """
  return max_new_tokens + window, max_new_tokens + window + 1


def row_keys(rng, batch: int, stream: int):
  """Per-row PRNG keys [B]: independent of the batch size (fold_in, not split)."""
  base = jax.random.fold_in(rng, stream)
  return jax.vmap(lambda b: jax.random.fold_in(base, b))(jnp.arange(batch))


def round_uniforms(keys, step, n: int):
  """One fold_in per row and round -> [B, n] uniforms in [0, 1)."""
  return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, step), (n,)))(keys)


def last_token(seq, length):
  """seq [B, S] int32, length [B] -> the last committed token [B] (start token 0 at 0)."""
  return jnp.take_along_axis(seq, length[:, None], axis=1)[:, 0]


def init_cache(model, input_ids, max_length: int, input_lengths=None):
  """model.init_cache, with the prompt lengths [B] only when they are given."""
  if input_lengths is None:
    return model.init_cache(input_ids, max_length)
  return model.init_cache(input_ids, max_length, input_lengths=input_lengths)


def is_eos(tokens, eos_ids: tuple[int, ...]):
  """tokens [...] int -> bool [...]: the token is one of the static `eos_ids`."""
  out = jnp.zeros(tokens.shape, bool)
  for e in eos_ids:
    out = out | (tokens == e)
  return out


def commit(seq, length, done, window, n_valid, max_new_tokens: int,
           eos_ids: tuple[int, ...] = (EOS,)):
  """Writes up to n_valid tokens of `window` after each row's last token.

  Args:
    seq: [B, S] int32 decoder tokens (S ≥ max_new_tokens + W + 1).
    length: [B] int32 generated tokens so far; done: [B] bool.
    window: [B, W] int32 candidate tokens; n_valid: [B] int32 in [1, W].
    eos_ids: static tuple of the ids that end a row (empty: none does).
  Returns:
    (seq, length, done, count): count [B] = tokens committed (0 for done rows),
    cut after the first EOS and at max_new_tokens; positions of the window past
    `count` are written as 0, so the output holds 0 after EOS.
  """
  width = window.shape[1]
  j = jnp.arange(width)[None, :]                                  # [1, W]
  is_eos_ = is_eos(window, eos_ids) & (j < n_valid[:, None])
  first_eos = jnp.where(jnp.any(is_eos_, axis=1), jnp.argmax(is_eos_, axis=1), width)
  count = jnp.minimum(jnp.minimum(n_valid, first_eos + 1), max_new_tokens - length)
  count = jnp.where(done, 0, jnp.maximum(count, 0))
  window = jnp.where(j < count[:, None], window, 0)
  seq = jax.vmap(jax.lax.dynamic_update_slice)(seq, window.astype(jnp.int32),
                                               (length + 1)[:, None])
  eos_hit = first_eos < count
  new_length = length + count
  done = done | eos_hit | (new_length >= max_new_tokens)
  return seq, new_length, done, count


@flax.struct.dataclass
class Cursor:
  """The state every loop carries, beside its own caches and extras."""
  step: jax.Array    # [] int32 loop iteration = round index of active rows
  seq: jax.Array     # [B, seq_len] int32 decoder tokens, seq[:, 0] = 0 (start)
  length: jax.Array  # [B] int32 generated tokens committed
  done: jax.Array    # [B] bool
  stats: Stats

  @classmethod
  def start(cls, batch: int, seq_len: int, done=None) -> "Cursor":
    """Nothing generated; rows with done[b] set (default none) are not decoded."""
    return cls(step=jnp.zeros((), jnp.int32),
               seq=jnp.zeros((batch, seq_len), jnp.int32),
               length=jnp.zeros((batch,), jnp.int32),
               done=jnp.zeros((batch,), bool) if done is None else done,
               stats=Stats.zeros(batch))

  @property
  def active(self) -> jax.Array:
    """[B] bool: rows still decoding."""
    return ~self.done

  def last_token(self) -> jax.Array:
    """[B]: each row's last committed token (the start token 0 at length 0)."""
    return last_token(self.seq, self.length)

  def advance(self, window, n_valid, max_new_tokens: int, eos_ids: tuple[int, ...],
              **increments) -> tuple["Cursor", jax.Array]:
    """Commits up to n_valid [B] tokens of window [B, W] (`commit`), adds
    `increments` (Stats names) for the rows active before the round, sets
    num_tokens, and moves to the next round. Returns (cursor, count [B])."""
    seq, length, done, count = commit(self.seq, self.length, self.done, window, n_valid,
                                      max_new_tokens, eos_ids)
    stats = self.stats.add(self.active, **increments).replace(num_tokens=length)
    return Cursor(step=self.step + 1, seq=seq, length=length, done=done,
                  stats=stats), count

  def tokens(self, max_new_tokens: int) -> jax.Array:
    """[B, max_new_tokens] int32: the generated tokens, 0 after EOS."""
    return self.seq[:, 1:max_new_tokens + 1]


def busy(state) -> jax.Array:
  """[] bool: some row of `state` (anything with a `cursor`) is still decoding."""
  return jnp.any(state.cursor.active)


def run(state, body, cond=busy):
  """jax.lax.while_loop(cond, body, state): rounds until every row is done."""
  return jax.lax.while_loop(cond, body, state)
