"""The decoder-step protocol that the decoding kernel programs against.

The kernel knows nothing about T5 (t5x's `decoding.py` never imports a model
either). A model is a JAX pytree (parameters are leaves; configuration is
static), so a jitted kernel takes it as an argument and compiles once per
configuration, not once per set of weights.

Decoder positions: position 0 holds the decoder start token (0); position t+1
holds generated token t. A call

    logits, cache = model.step(tokens, cache, positions)

feeds `tokens[b, i]` at decoder position `positions[b] + i`, i = 0..k-1. It
attends to cache slots `< positions[b]` plus the causal part of the chunk,
WRITES (replaces) the K/V of slots `positions[b] .. positions[b] + k - 1`, and
returns `logits[b, i]`: the next-token logits for position
`positions[b] + i + 1`. Slots at or beyond `positions[b]` are ignored on read,
so rolling a row back is metadata only: call the next step with a smaller
position and the stale slots are masked, then overwritten.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

Cache = Any  # a pytree of arrays whose leading axis is the batch


@runtime_checkable
class DecoderModel(Protocol):
  """What `spec_cascade_jax.decoding` needs from a drafter or verifier."""

  @property
  def vocab_size(self) -> int:
    """Size of the output distribution (static)."""

  def init_cache(self, input_ids: jax.Array, max_length: int) -> Cache:
    """Encodes `input_ids` [B, S] int32 (0 = pad) once; returns an empty cache.

    `max_length` (static) is the number of decoder positions the cache holds.
    """

  def step(self, tokens: jax.Array, cache: Cache,
           positions: jax.Array) -> tuple[jax.Array, Cache]:
    """tokens [B, k] int32, positions [B] int32 -> (logits [B, k, V] f32, cache)."""
