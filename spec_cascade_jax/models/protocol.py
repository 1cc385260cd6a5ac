"""The decoder-step protocol that the decoding kernel programs against.

The kernel knows nothing about T5 or any LM family (t5x's `decoding.py` never
imports a model either). A model is a JAX pytree (parameters are leaves;
configuration is static), so a jitted kernel takes it as an argument and
compiles once per configuration, not once per set of weights.

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

Decoder-only LMs (models/lm/model.py) have no start token: a generation continues
the prompt. They map the positions onto their cache: `init_cache` prefills
every prompt token but the last and records each row's prompt length; decoder
position t of a row with an n-token prompt is cache slot (and rope position)
n - 1 + t, and at decoder position 0 the model feeds the prompt's last token
in place of whatever start token the kernel passes. The logits at position t
then predict generated token t, as for T5, and the kernel is unchanged.

Two growths of the protocol, made once for every family (decoder-only LMs
need them; for T5 nothing observable changes):
- `init_cache(input_ids, max_length, input_lengths=None)`: `input_lengths`
  [B] int32 gives each row's number of real tokens (the row right-padded
  with any ids after it), for vocabularies where 0 is a real token (Llama 3,
  Qwen 2.5). None: the model's own pad convention (T5, Gemma: 0 pads; an LM
  without a pad id: every row unpadded). The kernels pass the argument only
  when `generate(input_lengths=...)` is given, so a model whose `init_cache`
  takes two arguments still works without it.
- An optional attribute `eos_id` (an int or a tuple of ints; empty: no EOS)
  names the tokens that end a row; `generate` uses it unless its `eos_id=`
  argument says otherwise, and a model without it ends rows at 1 (T5's EOS).
  Drafter and verifier must agree.

One optional attribute for input pipelines (the kernel never reads it):
`decoder_only` (True on models/lm/model.py's LMModel; absent: False). Inputs of such
a model are prompts that the generation continues, so a pipeline (the main
job's `evaluation/infer.py`) builds prompts, passes `input_lengths` and ends
rows at the model's `eos_id`; `is_decoder_only(model)` reads it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import flax.struct
import jax
import jax.numpy as jnp

Cache = Any  # a pytree of arrays whose leading axis is the batch


@runtime_checkable
class DecoderModel(Protocol):
  """What `spec_cascade_jax.decoding` needs from a drafter or verifier."""

  @property
  def vocab_size(self) -> int:
    """Size of the output distribution (static)."""

  def init_cache(self, input_ids: jax.Array, max_length: int,
                 input_lengths: jax.Array | None = None) -> Cache:
    """Sets up `input_ids` [B, S] int32 once (T5: encode; an LM: prefill the
    prompt); returns the cache.

    `max_length` (static) is the number of decoder positions the cache holds.
    `input_lengths` [B] int32 (optional): real tokens per row; None: the
    model's pad convention (0 = pad for T5).
    """

  def step(self, tokens: jax.Array, cache: Cache,
           positions: jax.Array) -> tuple[jax.Array, Cache]:
    """tokens [B, k] int32, positions [B] int32 -> (logits [B, k, V] f32, cache)."""


@flax.struct.dataclass
class ModelWrapper:
  """A model that delegates every part of the protocol to `model` and passes
  its logits through `transform_logits` (identity here). Subclasses change
  the distribution a wrapped model gives (models/padded.py widens its
  vocabulary; testing.NoEos forbids EOS) and stay a pytree of the wrapped
  model's parameters."""
  model: Any

  @property
  def vocab_size(self) -> int:
    return self.model.vocab_size

  @property
  def eos_id(self):
    return getattr(self.model, "eos_id", 1)

  @property
  def decoder_only(self) -> bool:
    return is_decoder_only(self.model)

  @property
  def config(self):
    return self.model.config

  def transform_logits(self, logits: jax.Array) -> jax.Array:
    return logits

  def init_cache(self, input_ids, max_length, input_lengths=None):
    if input_lengths is None:  # models whose init_cache takes two arguments
      return self.model.init_cache(input_ids, max_length)
    return self.model.init_cache(input_ids, max_length, input_lengths)

  def step(self, tokens, cache, positions):
    logits, cache = self.model.step(tokens, cache, positions)
    return self.transform_logits(logits), cache

  def logits(self, *args, **kwargs) -> jax.Array:
    return self.transform_logits(self.model.logits(*args, **kwargs))


def is_decoder_only(model) -> bool:
  """Whether `model`'s inputs are prompts it continues (see the module docstring)."""
  return bool(getattr(model, "decoder_only", False))


def check_ids(name: str, x, ndim: int = 2) -> None:
  """Raises a ValueError naming `name` unless `x` is an ndim-D integer array of
  token ids (every family's model methods check their inputs with it)."""
  if x.ndim != ndim:
    raise ValueError(f"{name} must be {ndim}-D int token ids, got shape {x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"{name} must hold integer token ids, got dtype {x.dtype}.")
