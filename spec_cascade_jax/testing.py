"""Toy models for tests and users: a bigram decoder, tiny T5 and LM pairs.

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

from spec_cascade_jax.models.protocol import ModelWrapper


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

  def init_cache(self, input_ids: jax.Array, max_length: int, input_lengths=None):
    del input_lengths  # a bigram model ignores its inputs
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
  from spec_cascade_jax.models.t5 import PRESETS, T5Model

  rng = jax.random.PRNGKey(0) if rng is None else rng
  base = PRESETS["tiny-v1.0"].replace(vocab_size=vocab_size, d_model=d_model)
  k_d, k_v = jax.random.split(rng)
  verifier = T5Model.init(base.replace(num_layers=verifier_layers, name="tiny-verifier"), k_v)
  drafter = T5Model.init(base.replace(num_layers=drafter_layers, name="tiny-drafter"), k_d)
  return drafter, verifier


def tiny_lm_pair(rng=None, model_type: str = "llama", vocab_size: int = 128,
                 verifier_layers: int = 2, drafter_layers: int = 1,
                 init_std: float | None = None, **config):
  """Random (drafter, verifier) decoder-only LMs of one family sharing a
  vocabulary (models/lm/config.py's tiny_config; `config` overrides fields).

  The drafter is a shallower copy of the verifier's architecture with its
  own weights. init_std: draw every parameter from N(0, init_std²) instead
  (norm scales and biases included; no init compiles, so this is the fast
  path for tests); larger values give peakier next-token distributions than
  Hugging Face's init, which a tiny random model makes nearly uniform.
  """
  from spec_cascade_jax.models.lm import LMModel, tiny_config

  rng = jax.random.PRNGKey(0) if rng is None else rng
  base = tiny_config(model_type, vocab_size=vocab_size, **config)
  models = []
  for key, layers, name in zip(jax.random.split(rng), (drafter_layers, verifier_layers),
                               ("tiny-lm-drafter", "tiny-lm-verifier")):
    cfg = base.replace(num_layers=layers, name=name, layer_types=base.layer_types[:layers])
    if init_std is None:
      models.append(LMModel.init(cfg, key))
      continue
    shapes = jax.eval_shape(lambda r, c=cfg: LMModel.init(c, r, jit=False), key)
    leaves, tree = jax.tree.flatten(shapes.params)
    draw = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    params = [jnp.asarray(init_std * draw.standard_normal(x.shape), jnp.float32)
              for x in leaves]
    models.append(LMModel(config=cfg, params=jax.tree.unflatten(tree, params)))
  return tuple(models)


@flax.struct.dataclass
class NoEos(ModelWrapper):
  """Wraps a model and forbids its EOS ids (1 for T5), so every row decodes to
  max length.

  Benchmarks use it so that runs of different methods decode the same number
  of tokens and their times compare.
  """

  def transform_logits(self, logits):
    eos = self.eos_id
    for e in (eos if isinstance(eos, tuple) else (eos,)):
      logits = logits.at[..., e].set(-1e9)
    return logits
