"""Per-step decode cost of the drafter against the verifier (CPU, batch 1).

    python benchmarks/step_cost.py [--drafter demo-drafter] [--verifier demo-verifier]

Times one jitted `model.step` of k tokens (k = 1: an autoregressive / drafter
step; k = γ+1: the verifier's scoring chunk) at batch 1 with a half-full
cache, median of many calls, both models in the same process. The ratio is
the number that matters (DESIGN.md section 5); absolute times are this CPU's.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.loading import load_model


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


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--drafter", default="demo-drafter")
  ap.add_argument("--verifier", default="demo-verifier")
  ap.add_argument("--gamma", type=int, default=5)
  ap.add_argument("--iters", type=int, default=300)
  args = ap.parse_args()
  d, v = load_model(args.drafter), load_model(args.verifier)
  rows = [("drafter step (k=1)", time_step(d, 1, iters=args.iters)),
          ("verifier step (k=1)", time_step(v, 1, iters=args.iters)),
          (f"verifier chunk (k={args.gamma + 1})", time_step(v, args.gamma + 1,
                                                            iters=args.iters))]
  print(f"backend={jax.default_backend()} devices={jax.device_count()}")
  print(f"{'call':28s} {'median ms':>10s}")
  for name, t in rows:
    print(f"{name:28s} {t * 1e3:10.3f}")
  print(f"drafter/verifier step cost ratio: {rows[0][1] / rows[1][1]:.3f}")


if __name__ == "__main__":
  main()
