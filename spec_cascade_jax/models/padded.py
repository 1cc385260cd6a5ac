"""A model whose output vocabulary is widened with ids it never produces.

Two checkpoints of one tokenizer can carry embeddings of different sizes: the
rows past the tokenizer's ids are padding (Qwen 2.5 0.5B has 151,936 rows,
Qwen 2.5 7B 152,064; the tokenizer's ids stop at 151,665). The decoding kernel
needs one vocabulary size, so

    drafter = pad_vocabulary(qwen_0_5b, 152064)

gives the smaller model the larger size: its logits for the added ids are
NEG_INF, so its distribution gives them probability exactly 0 (after any
temperature, top-k or top-p) and every other probability is unchanged. A
target π built from it is then still exact (docs/design.md §2): the added ids
are ids the drafter never proposes. `generate` checks input ids against
the widened size; ids past the model's own rows are ids no tokenizer of the
pair produces.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from spec_cascade_jax.models.protocol import ModelWrapper

NEG_INF = -1e30   # finite: exp underflows to 0 without inf arithmetic


@flax.struct.dataclass
class PaddedVocabulary(ModelWrapper):
  """`model` with `padded_size` outputs (protocol.DecoderModel)."""
  padded_size: int = flax.struct.field(pytree_node=False, default=0)

  @property
  def vocab_size(self) -> int:
    return self.padded_size

  def transform_logits(self, logits: jax.Array) -> jax.Array:
    extra = self.padded_size - logits.shape[-1]
    fill = jnp.full(logits.shape[:-1] + (extra,), NEG_INF, logits.dtype)
    return jnp.concatenate([logits, fill], axis=-1)


def pad_vocabulary(model, vocab_size: int) -> PaddedVocabulary:
  """`model` widened to `vocab_size` outputs (see the module docstring)."""
  own = int(model.vocab_size)
  if vocab_size < own:
    raise ValueError(f"pad_vocabulary: vocab_size {vocab_size} is smaller than the "
                     f"model's own {own}; a vocabulary can only be widened.")
  return PaddedVocabulary(model=model, padded_size=int(vocab_size))
