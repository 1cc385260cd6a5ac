"""Toy models for tests and users: a bigram decoder and tiny T5 pairs.

`BigramModel` implements the decoder-step protocol (models/protocol.py) with a
[V, V] logit table: the next-token logits depend only on the token just fed,
so the exact distribution of any decoding method is a small product of
per-position targets that a test can enumerate in numpy.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class BigramModel:
  """Next-token logits given the previous token: logits[prev] [V].

  The decoder start token 0 sits at position 0, so logits[0] is the
  distribution of the first generated token. The cache is a real pytree (the
  tokens fed at each decoder slot, [B, max_length] int32), written by
  replacement like a K/V cache, so the kernels treat this model like T5.
  """

  logits: jax.Array  # [V, V] float32

  @property
  def vocab_size(self) -> int:
    return int(self.logits.shape[-1])

  def init_cache(self, input_ids: jax.Array, max_length: int):
    if input_ids.ndim != 2:
      raise ValueError(f"input_ids must be [B, S], got shape {input_ids.shape}.")
    return {"tokens": jnp.zeros((input_ids.shape[0], max_length), jnp.int32)}

  def step(self, tokens: jax.Array, cache, positions: jax.Array):
    """tokens [B, k] int32, positions [B] int32 -> (logits [B, k, V], cache)."""
    logits = jnp.asarray(self.logits, jnp.float32)[tokens]        # [B, k, V]
    slots = jax.vmap(jax.lax.dynamic_update_slice)(
        cache["tokens"], tokens.astype(jnp.int32), positions[:, None])
    return logits, {"tokens": slots}


def random_bigram(rng, vocab_size: int, sharpness: float = 1.0) -> BigramModel:
  """A BigramModel with N(0, sharpness²) logits (larger sharpness: peakier rows)."""
  logits = sharpness * jax.random.normal(rng, (vocab_size, vocab_size), jnp.float32)
  return BigramModel(logits=logits)


def bigram_from_probs(probs) -> BigramModel:
  """A BigramModel whose rows are exactly the given next-token distributions [V, V]."""
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or probs.shape[0] != probs.shape[1]:
    raise ValueError(f"probs must be [V, V], got {probs.shape}.")
  return BigramModel(logits=jnp.asarray(np.log(np.maximum(probs, 1e-30)), jnp.float32))


def tiny_t5_pair(rng=None, vocab_size: int = 64, verifier_layers: int = 3,
                 drafter_layers: int = 1, d_model: int = 32):
  """Random (drafter, verifier) T5 models sharing a vocabulary; compile in seconds.

  The drafter is a shallower copy of the verifier's architecture with its own
  random weights, so the two disagree often (a useful test of rejections).
  """
  # Imported here: the bigram tools above must not need the T5 code.
  from spec_cascade_jax.models.configs import PRESETS
  from spec_cascade_jax.models.t5 import T5Model

  rng = jax.random.PRNGKey(0) if rng is None else rng
  base = PRESETS["tiny-v1.0"].replace(vocab_size=vocab_size, d_model=d_model)
  k_d, k_v = jax.random.split(rng)
  verifier = T5Model.init(base.replace(num_layers=verifier_layers, name="tiny-verifier"), k_v)
  drafter = T5Model.init(base.replace(num_layers=drafter_layers, name="tiny-drafter"), k_d)
  return drafter, verifier


@flax.struct.dataclass
class NoEos:
  """Wraps a model and forbids EOS (id 1), so every row decodes to max length.

  Benchmarks use it so that runs of different methods decode the same number
  of tokens and their times compare.
  """
  model: object

  @property
  def vocab_size(self):
    return self.model.vocab_size

  def init_cache(self, input_ids, max_length):
    return self.model.init_cache(input_ids, max_length)

  def step(self, tokens, cache, positions):
    logits, cache = self.model.step(tokens, cache, positions)
    return logits.at[..., 1].set(-1e9), cache
