"""Throughput of sharded speculative decoding against device count.

For each mesh (data, model) on the first data * model devices, times
`parallel.sharded_generate` (greedy, compile excluded, median of repeats) at
a fixed global batch, and reports generated tokens per second next to
unsharded `scj.generate` on one device. EOS is masked out so every row decodes
exactly --max-new-tokens tokens.

What it measures depends on where it runs:
  * --platform cpu (default): 8 FAKE devices
    (XLA_FLAGS=--xla_force_host_platform_device_count=8) that all share the
    same CPU cores. More devices cannot be faster here; the numbers show the
    cost of partitioning only (collectives, smaller per-device ops, launch
    overhead per device).
  * --platform gpu / tpu: every visible accelerator. On a multi-GPU host or a
    TPU slice this is the real scaling curve.

    python benchmarks/scaling.py                          # fake CPU devices
    python benchmarks/scaling.py --platform gpu --verifier t5.1.1-base \
        --drafter t5.1.1-small --batch 64 --max-new-tokens 64    # real devices
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

GPU_COMMAND = ("python benchmarks/scaling.py --platform gpu --verifier t5.1.1-base "
               "--drafter t5.1.1-small --batch 64 --max-new-tokens 64 --repeats 5")


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--platform", default="cpu", choices=("cpu", "gpu", "tpu"))
  p.add_argument("--fake-devices", type=int, default=8,
                 help="number of fake CPU devices (--platform cpu only)")
  p.add_argument("--verifier", default="bench-verifier",
                 help="T5 preset name (models.t5.PRESETS) or bench-verifier")
  p.add_argument("--drafter", default="bench-drafter")
  p.add_argument("--meshes", default="1x1,2x1,4x1,8x1,4x2,2x4",
                 help="comma-separated DATAxMODEL meshes (skipped if too large)")
  p.add_argument("--batch", type=int, default=16, help="global batch")
  p.add_argument("--input-len", type=int, default=16)
  p.add_argument("--max-new-tokens", type=int, default=32)
  p.add_argument("--num-draft-tokens", type=int, default=3, help="γ")
  p.add_argument("--method", default="speculative")
  p.add_argument("--repeats", type=int, default=3)
  return p.parse_args(argv)


def main(argv=None):
  args = _parse(sys.argv[1:] if argv is None else argv)
  if args.platform == "cpu":
    # Must happen before JAX initialises its backends.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.fake_devices}")
    os.environ["JAX_PLATFORMS"] = "cpu"

  import jax
  import numpy as np

  import spec_cascade_jax as scj
  from spec_cascade_jax import parallel
  from spec_cascade_jax.models.t5 import PRESETS, T5Model

  from spec_cascade_jax.testing import NoEos

  bench = PRESETS["tiny-v1.1"].replace(vocab_size=512, d_model=128, d_kv=16, d_ff=512,
                                       num_heads=8, num_layers=2, num_decoder_layers=2)
  configs = {"bench-verifier": bench.replace(name="bench-verifier"),
             "bench-drafter": bench.replace(num_layers=1, num_decoder_layers=1,
                                            name="bench-drafter"), **PRESETS}
  for name in (args.verifier, args.drafter):
    if name not in configs:
      raise SystemExit(f"Unknown model {name!r}; use bench-verifier/bench-drafter or one of "
                       f"{sorted(PRESETS)}.")
  # Random weights: throughput does not depend on them (EOS is masked).
  # Eager init: a jitted one compiles one sampler per parameter (minutes for
  # T5-large-sized models on a GPU).
  verifier = NoEos(T5Model.init(configs[args.verifier], jax.random.PRNGKey(0), jit=False))
  drafter = NoEos(T5Model.init(configs[args.drafter], jax.random.PRNGKey(1), jit=False))
  vocab = configs[args.verifier].vocab_size
  ids = np.random.RandomState(0).randint(2, vocab, size=(args.batch, args.input_len))
  ids = ids.astype(np.int32)
  kw = dict(method=args.method, num_draft_tokens=args.num_draft_tokens,
            max_new_tokens=args.max_new_tokens)

  def timed(fn):
    res = fn()   # compile / warm up
    times = []
    for _ in range(args.repeats):
      t = time.perf_counter()
      res = fn()
      times.append(time.perf_counter() - t)
    return statistics.median(times), res

  devices = jax.devices()
  print(f"platform={jax.devices()[0].platform} devices={len(devices)}"
        f"{' (FAKE: all share the host CPU)' if args.platform == 'cpu' else ''}; "
        f"verifier={args.verifier} drafter={args.drafter} method={args.method} "
        f"batch={args.batch} input_len={args.input_len} "
        f"max_new_tokens={args.max_new_tokens} num_draft_tokens={args.num_draft_tokens}; "
        f"median of {args.repeats}, compile excluded")
  base_s, base = timed(lambda: scj.generate(drafter, verifier, ids, **kw))
  tokens = int(base.stats["num_tokens"].sum())
  print(f"{'mesh':>10} {'devices':>7} {'s/call':>9} {'tokens/s':>10} {'vs 1 device':>11}")
  print(f"{'unsharded':>10} {1:>7} {base_s:>9.4f} {tokens / base_s:>10.1f} {1.0:>11.2f}")
  for spec in args.meshes.split(","):
    data, model = (int(x) for x in spec.lower().split("x"))
    n = data * model
    if n > len(devices) or args.batch % data:
      print(f"{spec:>10} skipped (needs {n} devices and batch % {data} == 0)")
      continue
    mesh = parallel.make_mesh(mesh_shape=(data, model), devices=devices[:n])
    try:
      secs, res = timed(lambda: parallel.sharded_generate(drafter, verifier, ids, mesh=mesh,
                                                          **kw))
    except ValueError as e:   # e.g. heads not divisible by the model axis
      print(f"{spec:>10} skipped: {e}")
      continue
    same = np.array_equal(res.tokens, base.tokens)
    print(f"{spec:>10} {n:>7} {secs:>9.4f} {tokens / secs:>10.1f} {base_s / secs:>11.2f}"
          f"{'' if same else '  (tokens differ from unsharded!)'}")
  if args.platform == "cpu":
    print("\nFake CPU devices measure partitioning overhead, not speed-up. For real "
          "scaling run on a multi-accelerator host:\n  " + GPU_COMMAND)


if __name__ == "__main__":
  main()
