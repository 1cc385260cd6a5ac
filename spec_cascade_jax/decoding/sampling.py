"""Logits -> sampling distributions, and exact categorical sampling.

`temperature` and `top_p` are traced (scalars or per-row arrays), so a sweep
never recompiles; `top_k` changes array shapes inside `lax.top_k` and is static.
Temperature 0 is selected with `jnp.where`, per row: a batch may mix greedy and
sampled rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _per_row(x, ndim):
  """[...] -> [..., 1 * (ndim - x.ndim)] so a per-row value meets [B, ..., V]."""
  x = jnp.asarray(x, jnp.float32)
  return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def unscaled_probs(logits):
  """q° / p°: softmax at temperature 1, no truncation.  [..., V] -> [..., V]."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def _nucleus(probs, top_p):
  """Keep the smallest top-probability set with mass ≥ top_p (ties at the edge kept)."""
  srt = -jnp.sort(-probs, axis=-1)                          # [..., V] descending
  mass_before = jnp.cumsum(srt, axis=-1) - srt              # exclusive cumsum
  n_keep = jnp.sum(mass_before < top_p, axis=-1, keepdims=True)  # ≥ 1 as top_p > 0
  threshold = jnp.take_along_axis(srt, n_keep - 1, axis=-1)
  kept = jnp.where(probs >= threshold, probs, 0.0)
  return kept / jnp.sum(kept, axis=-1, keepdims=True)


def probs_from_logits(logits, temperature, top_k: int = 0, top_p=1.0):
  """Sampling distribution of each row.

  Args:
    logits: [..., V] float.
    temperature: scalar or [B] (leading axes of `logits`) float; 0 -> greedy.
    top_k: static int; 0 (or ≥ V) disables it. Ties with the k-th logit are kept.
    top_p: scalar or [B] float in (0, 1]; 1 disables nucleus truncation.
  Returns:
    [..., V] float32: softmax(logits / T) truncated by top-k then top-p, or
    one-hot at argmax(logits) (first index on ties) where T == 0.
  """
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  t = _per_row(temperature, logits.ndim)
  greedy = t <= 0.0
  scaled = logits / jnp.where(greedy, 1.0, t)
  if 0 < top_k < vocab:
    kth = jax.lax.top_k(scaled, top_k)[0][..., -1:]
    scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
  probs = jax.nn.softmax(scaled, axis=-1)
  top_p = _per_row(top_p, logits.ndim)
  # The sort costs O(V log V) per position: skip it when no row truncates.
  probs = jax.lax.cond(jnp.any(top_p < 1.0), _nucleus, lambda pr, _: pr, probs, top_p)
  onehot = jax.nn.one_hot(jnp.argmax(logits, axis=-1), vocab, dtype=jnp.float32)
  return jnp.where(greedy, onehot, probs)


def sample(u, probs):
  """Inverse-CDF categorical sample: index i with probability probs[i] / Σ probs.

  Args:
    u: [...] float32 uniform in [0, 1).
    probs: [..., V] float, non-negative, positive total.
  Returns:
    [...] int32. Zero-probability tokens are never returned (a rounding of
    u·total up to the total is clipped to the last positive entry); a one-hot
    row returns its index whatever u is, so greedy decoding is deterministic.
  """
  cdf = jnp.cumsum(probs.astype(jnp.float32), axis=-1)
  idx = jnp.sum(cdf <= u[..., None] * cdf[..., -1:], axis=-1)
  vocab = probs.shape[-1]
  last_positive = vocab - 1 - jnp.argmax(jnp.flip(probs > 0, axis=-1), axis=-1)
  return jnp.minimum(idx, last_positive).astype(jnp.int32)
