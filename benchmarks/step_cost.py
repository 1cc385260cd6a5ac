"""Per-step decode cost of the drafter against the verifier (CPU, batch 1).

    python benchmarks/step_cost.py [--drafter demo-drafter] [--verifier demo-verifier]

Times `model.step` of k tokens (k = 1: an autoregressive / drafter step;
k = γ+1: the verifier's scoring chunk) at batch 1, both models in the same
process, two ways:
  - standalone: one jitted call with a half-full cache, median of many calls;
    it includes Python dispatch and a copy of the (not donated) cache;
  - in a loop: `step_time` (evaluation/step_costs.py, the timing the sweep's
    cost model uses), steps inside a jitted `fori_loop` with the cache
    carried, as the decoding kernels run them (encoding subtracted).
The ratio is the number that matters (docs/design.md §6.4); absolute times
are this CPU's.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from spec_cascade_jax.models.loading import load_model  # noqa: E402


def time_step(model, k: int, batch: int = 1, src_len: int = 16, cache_len: int = 72,
              iters: int = 300) -> float:
  ids = jnp.ones((batch, src_len), jnp.int32)
  cache = model.init_cache(ids, cache_len)
  step = jax.jit(lambda m, t, c, p: m.step(t, c, p))
  tokens = jnp.full((batch, k), 5, jnp.int32)
  pos = jnp.full((batch,), cache_len // 2, jnp.int32)
  jax.block_until_ready(step(model, tokens, cache, pos))  # compile
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    jax.block_until_ready(step(model, tokens, cache, pos))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


@functools.partial(jax.jit, static_argnames=("gamma", "cache_len", "inner", "drafts",
                                             "chunks"))
def _round_loop(drafter, verifier, ids, *, gamma, cache_len, inner, drafts, chunks):
  """`inner` rounds of `drafts` drafter steps then `chunks` verifier chunks of γ+1."""
  dc, vc = drafter.init_cache(ids, cache_len), verifier.init_cache(ids, cache_len)

  def body(i, carry):
    dc, vc, tok = carry
    pos = jnp.full(tok.shape, (i * (gamma + 1)) % (cache_len - gamma - 1), jnp.int32)
    for j in range(drafts):
      logits, dc = drafter.step(tok[:, None], dc, pos + j)
      tok = jnp.argmax(logits[:, -1], -1).astype(jnp.int32)
    for _ in range(chunks):
      chunk = jnp.broadcast_to(tok[:, None], (tok.shape[0], gamma + 1))
      logits, vc = verifier.step(chunk, vc, pos)
      tok = jnp.argmax(jnp.max(logits, axis=1), -1).astype(jnp.int32)
    return dc, vc, tok

  return jax.lax.fori_loop(0, inner, body, (dc, vc, ids[:, 0]))[2]


def round_models(drafter, verifier, ids, gamma: int, repeats: int, cache_len: int = 72,
                 inner: int = 32) -> dict[str, float]:
  """Seconds per round of the model calls a speculative round makes (γ+1 drafter
  steps, one verifier chunk): each part in a loop alone, and both interleaved
  in one loop as the kernel runs them (encoders subtracted)."""
  def timed(drafts, chunks):
    kw = dict(gamma=gamma, cache_len=cache_len, inner=inner, drafts=drafts, chunks=chunks)
    fn = lambda: _round_loop(drafter, verifier, ids, **kw).block_until_ready()
    return min(common.interleaved_times({"f": fn}, repeats)["f"]) / inner
  empty = timed(0, 0)
  return {"drafter steps": timed(gamma + 1, 0) - empty, "verifier chunk": timed(0, 1) - empty,
          "interleaved": timed(gamma + 1, 1) - empty}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--drafter", default="demo-drafter")
  ap.add_argument("--verifier", default="demo-verifier")
  ap.add_argument("--num-draft-tokens", type=int, default=5, help="γ")
  ap.add_argument("--iters", type=int, default=300)
  ap.add_argument("--repeats", type=int, default=7, help="timed loops of 64 steps (min)")
  args = ap.parse_args()
  d, v = load_model(args.drafter), load_model(args.verifier)
  ids = jnp.asarray(np.random.RandomState(0).randint(3, v.vocab_size, (1, 16)), jnp.int32)
  calls = [("drafter step", d, 1), ("verifier step", v, 1),
           ("verifier chunk", v, args.num_draft_tokens + 1)]
  rows = [(f"{name} (k={k})", time_step(m, k, iters=args.iters),
           common.step_time(m, ids, k, 72, 64, args.repeats)) for name, m, k in calls]
  print(f"backend={jax.default_backend()} devices={jax.device_count()}")
  print(f"{'call':28s} {'standalone ms':>14s} {'in a loop ms':>13s}")
  for name, t, t_loop in rows:
    print(f"{name:28s} {t * 1e3:14.3f} {t_loop * 1e3:13.3f}")
  print(f"drafter/verifier step cost ratio: {rows[0][1] / rows[1][1]:.3f} standalone,"
        f" {rows[0][2] / rows[1][2]:.3f} in a loop")
  print(f"verifier chunk / step: {rows[2][1] / rows[1][1]:.2f} standalone,"
        f" {rows[2][2] / rows[1][2]:.2f} in a loop")
  gamma = args.num_draft_tokens
  r = round_models(d, v, ids, gamma, args.repeats)
  parts = r["drafter steps"] + r["verifier chunk"]
  print(f"one round's model calls (γ={gamma}), in a loop: {gamma + 1} drafter steps"
        f" {r['drafter steps'] * 1e3:.3f} ms + verifier chunk {r['verifier chunk'] * 1e3:.3f} ms"
        f" = {parts * 1e3:.3f} ms apart; interleaved {r['interleaved'] * 1e3:.3f} ms"
        f" ({r['interleaved'] / parts - 1:+.0%})")


if __name__ == "__main__":
  main()
