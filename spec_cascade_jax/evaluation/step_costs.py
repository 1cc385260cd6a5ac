"""The machine's step costs: what each model call of a decode costs here.

Times, at batch 1 and with the shapes of a decode (input length, cache
length), each model's set-up for the inputs (`init_cache`: T5's encoder, an
LM's prefill) and its `step` on chunks of k tokens, inside a jitted
`fori_loop` that carries the cache as the decoding loops do (Python dispatch
and the jit call's own cost stay out: they are the decode's overhead, which
the cost model exposes). Returns evaluation/cost_model.py's StepCosts.

Timing (docs/design.md §6.4): compile excluded (each callable runs once
untimed), callables interleaved round-robin within every repeat, and the
fastest repeat kept, the better estimate on a shared machine. A step's cost is
(loop of `inner` steps − the set-up alone) / inner. `measure` interleaves
every program it times (both set-ups, every chunk width) in one round-robin,
so that load from other processes does not bend c(k) from width to width.

    costs = measure(drafter, verifier, input_length=48, max_new_tokens=64,
                    num_draft_tokens=5)

benchmarks/cost_model.py prints these; the sweep times `programs` among each
point's paired decodes (evaluation/infer.py `PointTimer`), so that the costs
meet the load the decodes met.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Hashable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.decoding import loop
from spec_cascade_jax.evaluation.cost_model import StepCosts


def interleaved_times(fns: dict[Hashable, Callable[[], object]], repeats: int,
                      warmup: bool = True, rewarm: bool = False) -> dict[Hashable, list[float]]:
  """Seconds of each call, `repeats` rounds of one call per fn in turn.

  Each fn must block until its result is ready. With `warmup`, every fn runs
  once untimed first (compilation). With `rewarm`, every timed call follows an
  untimed call of the same fn: a call right after another framework's (torch's
  threads, caches) runs ~25% slower on this CPU (measured for our decoding
  after an HF `generate`), which would bias a comparison against whichever
  method follows the other framework.
  """
  if warmup:
    for fn in fns.values():
      fn()
  times: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      if rewarm:
        fn()
      t0 = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t0)
  return times


@functools.partial(jax.jit, static_argnames=("chunk", "cache_len", "inner"))
def step_loop(model, ids, *, chunk: int, cache_len: int, inner: int):
  """Sets up the cache, then `inner` decoder steps of [B, chunk] tokens in a fori_loop."""
  cache = model.init_cache(ids, cache_len)

  def body(i, carry):
    cache, tok = carry
    tokens = jnp.broadcast_to(tok[:, None], (tok.shape[0], chunk))
    pos = jnp.full(tok.shape, (i * chunk) % (cache_len - chunk), jnp.int32)
    logits, cache = model.step(tokens, cache, pos)
    # Reduce over every position: were only the last one used, XLA would
    # compute the vocabulary projection for that row alone.
    return cache, jnp.argmax(jnp.max(logits, axis=1), -1).astype(jnp.int32)

  return jax.lax.fori_loop(0, inner, body, (cache, ids[:, 0]))[1]


@functools.partial(jax.jit, static_argnames=("width", "cache_len", "inner"))
def round_loop(drafter, verifier, ids, *, width: int, cache_len: int, inner: int):
  """Sets up both caches, then `inner` speculative rounds' model calls in the
  kernel's order (decoding/kernel.py): `width` drafter steps (unrolled, as the
  kernel's draft) feeding each other's argmax, then one verifier chunk of
  `width` tokens (the last token and the first width − 1 drafts)."""
  dcache = drafter.init_cache(ids, cache_len)
  vcache = verifier.init_cache(ids, cache_len)

  def body(i, carry):
    dcache, vcache, tok = carry
    pos = jnp.full(tok.shape, (i * width) % (cache_len - width), jnp.int32)
    drafts, t = [], tok
    for j in range(width):
      logits, dcache = drafter.step(t[:, None], dcache, pos + j)
      t = jnp.argmax(logits[:, 0], -1).astype(jnp.int32)
      drafts.append(t)
    chunk = jnp.stack([tok] + drafts[:width - 1], axis=1)
    logits, vcache = verifier.step(chunk, vcache, pos)
    # The next round's token depends on the last draft too: the chunk leaves
    # it out, and XLA would otherwise drop that step's vocabulary projection
    # (and at width 1 the drafter altogether: R(1) read below c(1)).
    out = jnp.argmax(jnp.max(logits, axis=1), -1).astype(jnp.int32)
    return dcache, vcache, (out + t) % verifier.vocab_size

  return jax.lax.fori_loop(0, inner, body, (dcache, vcache, ids[:, 0]))[2]


@functools.partial(jax.jit, static_argnames=("cache_len",))
def encode_only(model, ids, *, cache_len: int):
  """The cache set-up alone (`step_loop` without its steps)."""
  return model.init_cache(ids, cache_len)


def step_time(model, ids, chunk: int, cache_len: int, inner: int, repeats: int) -> float:
  """Seconds per `model.step` on [B, chunk] tokens in a fori_loop, set-up subtracted
  (never negative: noise larger than the steps reads 0)."""
  ts = interleaved_times(
      {"loop": lambda: step_loop(model, ids, chunk=chunk, cache_len=cache_len,
                                 inner=inner).block_until_ready(),
       "enc": lambda: jax.block_until_ready(encode_only(model, ids, cache_len=cache_len))},
      repeats)
  return max(min(ts["loop"]) - min(ts["enc"]), 0.0) / inner


def programs(drafter, verifier, *, input_length: int, max_new_tokens: int,
             num_draft_tokens: int, inner: int = 32, seed: int = 0
             ) -> tuple[dict[Hashable, Callable[[], object]],
                        Callable[[Mapping[Hashable, float]], StepCosts]]:
  """The programs `measure` times, and how their times make StepCosts.

  Returns (fns, costs): fns {key: callable that runs one program and blocks},
  each model's set-up alone and set-up plus `inner` steps of each width, and,
  with both models, both set-ups plus `inner` speculative rounds of each
  width (`round_loop`); costs({key: seconds}) -> StepCosts, a step being
  (loop − set-up) / inner, a round (round loop − both set-ups) / inner.
  A caller may time fns among its own calls (benchmarks/cost_model.py
  interleaves them with the decodes it compares them with)."""
  if num_draft_tokens < 1 or input_length < 1 or max_new_tokens < 1:
    raise ValueError(f"need input_length, max_new_tokens, num_draft_tokens >= 1; got "
                     f"{input_length}, {max_new_tokens}, {num_draft_tokens}.")
  cache_len, _ = loop.buffer_lengths(max_new_tokens, num_draft_tokens + 1)
  model = verifier if verifier is not None else drafter
  if model is None:
    raise ValueError("no model to measure: drafter and verifier are both None.")
  # Real tokens, no padding, at ids >= 3 (past T5's pad, EOS and unknown).
  ids = jnp.asarray(np.random.RandomState(seed).randint(3, model.vocab_size,
                                                        (1, input_length)), jnp.int32)
  widths = {"verifier": range(1, num_draft_tokens + 2), "drafter": (1,)}
  fns = {}
  for name, m in (("drafter", drafter), ("verifier", verifier)):
    if m is None:
      continue
    fns[(name, 0)] = lambda m=m: jax.block_until_ready(encode_only(m, ids, cache_len=cache_len))
    for k in widths[name]:
      fns[(name, k)] = lambda m=m, k=k: step_loop(m, ids, chunk=k, cache_len=cache_len,
                                                  inner=inner).block_until_ready()
  if drafter is not None and verifier is not None:
    for k in widths["verifier"]:
      fns[("round", k)] = lambda k=k: round_loop(drafter, verifier, ids, width=k,
                                                 cache_len=cache_len,
                                                 inner=inner).block_until_ready()

  def costs(seconds: Mapping[Hashable, float]) -> StepCosts:
    def enc(name):
      return seconds.get((name, 0), 0.0)

    def step(name, k, setup):
      return (max(seconds[(name, k)] - setup, 0.0) / inner
              if (name, k) in seconds else 0.0)

    both = enc("drafter") + enc("verifier")
    rounds = {k: step("round", k, both) for k in widths["verifier"] if ("round", k) in seconds}
    return StepCosts(encode_drafter=enc("drafter"), encode_verifier=enc("verifier"),
                     drafter_step=step("drafter", 1, enc("drafter")),
                     verifier_chunk={k: step("verifier", k, enc("verifier"))
                                     for k in widths["verifier"]},
                     round_cost=rounds or None)

  return fns, costs


def measure(drafter, verifier, *, input_length: int, max_new_tokens: int,
            num_draft_tokens: int, repeats: int = 10, inner: int = 32,
            seed: int = 0) -> StepCosts:
  """StepCosts of `drafter` and `verifier` (either may be None: its costs read
  0) at batch 1: inputs of `input_length` tokens (a length bucket), caches
  sized for `max_new_tokens` and drafts of γ = `num_draft_tokens` (the
  kernel's), verifier chunks of every width 1..γ+1.

  Every timed program (`programs`) runs once per repeat, all interleaved:
  load that comes and goes hits every width alike, so c(k) keeps its shape
  across k. Each is the fastest of `repeats`."""
  fns, costs = programs(drafter, verifier, input_length=input_length,
                        max_new_tokens=max_new_tokens, num_draft_tokens=num_draft_tokens,
                        inner=inner, seed=seed)
  return costs({key: min(t) for key, t in interleaved_times(fns, repeats).items()})
