"""One accelerator run: verifier step time against its bandwidth floor, round overhead, HF.

For each pair (a T5-small-shaped drafter with a T5-large-shaped verifier,
random weights; and the bundled pair, or random weights of its shapes), all
in bf16 (parameters cast to bfloat16, activations bfloat16):
  - copy bandwidth: a jitted `x + 1` over a large bf16 array, bytes read +
    written per second;
  - verifier step time at batch 1 and 8, one token and a γ+1 chunk, jitted in
    a fori_loop (dispatch excluded, encoding subtracted), against its floor:
    bytes one step must read (decoder weights incl. the tied embedding the
    logits read, self-attention cache of L slots, cross-attention K/V) divided
    by the copy bandwidth;
  - the speculative round's overhead: greedy speculative decoding with EOS
    masked (every run decodes --max-new-tokens), time per round against
    (γ+1) drafter steps + one verifier chunk timed alone; verifier-only
    decoding per token against one verifier step;
  - Hugging Face eager `generate` (greedy, batch 1, --max-new-tokens forced
    with min_new_tokens) on the same shapes, bf16, ms per token; with the
    drafter as `assistant_model` too.
Writes gpu.json to --out (default $OUT, else the current directory).

    python benchmarks/gpu.py                 # on the device machine, a few minutes
    python benchmarks/gpu.py --smoke         # tiny shapes, any machine (CPU check)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.testing import NoEos  # noqa: E402
from spec_cascade_jax.decoding import generate  # noqa: E402
from spec_cascade_jax.models.configs import PRESETS, T5Config  # noqa: E402
from spec_cascade_jax.models.t5 import T5Model  # noqa: E402

SMOKE_DRAFTER = T5Config(name="smoke-d", vocab_size=512, d_model=64, d_kv=16, d_ff=128,
                         num_heads=4, num_layers=2, num_decoder_layers=1)
SMOKE_VERIFIER = T5Config(name="smoke-v", vocab_size=512, d_model=128, d_kv=32, d_ff=256,
                          num_heads=4, num_layers=2)


def to_bf16(model: T5Model) -> T5Model:
  """Parameters stored in bfloat16 (half the bytes per step), bf16 activations."""
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), model.params)
  return T5Model(config=model.config.replace(dtype="bfloat16"), params=params)


def nbytes(tree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def step_bytes(model: T5Model, batch: int, enc_len: int, cache_len: int) -> int:
  """Bytes one decoder step reads: decoder weights, the output embedding, caches."""
  c, p = model.config, model.params
  weights = nbytes(p["decoder"]) + nbytes(p["token_embedder"])  # tied logits read all of V×D
  item = jnp.dtype(c.jnp_dtype).itemsize
  per_slot = 2 * c.n_decoder_layers * c.num_heads * c.d_kv * item * batch
  return weights + per_slot * (cache_len + enc_len)


def copy_bandwidth(n_bytes: int, repeats: int) -> float:
  """Bytes moved per second (read + write) by a jitted elementwise op."""
  x = jnp.ones((n_bytes // 2,), jnp.bfloat16)
  f = jax.jit(lambda x: x + jnp.bfloat16(1))
  ts = common.interleaved_times({"c": lambda: f(x).block_until_ready()}, repeats)["c"]
  return 2 * x.size * 2 / min(ts)


def step_time(model, ids, chunk: int, cache_len: int, inner: int, repeats: int) -> float:
  """Seconds per `model.step` on [B, chunk] tokens in a fori_loop, encoding subtracted."""

  @jax.jit
  def loop(model, ids):
    cache = model.init_cache(ids, cache_len)

    def body(i, carry):
      cache, tok = carry
      tokens = jnp.broadcast_to(tok[:, None], (tok.shape[0], chunk))
      pos = jnp.full(tok.shape, (i * chunk) % (cache_len - chunk), jnp.int32)
      logits, cache = model.step(tokens, cache, pos)
      return cache, jnp.argmax(logits[:, -1], -1).astype(jnp.int32)

    return jax.lax.fori_loop(0, inner, body, (cache, ids[:, 0]))[1]

  enc = jax.jit(lambda m, ids: jax.tree.leaves(m.init_cache(ids, cache_len))[0])
  ts = common.interleaved_times({"loop": lambda: loop(model, ids).block_until_ready(),
                                 "enc": lambda: enc(model, ids).block_until_ready()}, repeats)
  return max(min(ts["loop"]) - min(ts["enc"]), 0.0) / inner


def ours(drafter, verifier, ids, gamma: int, max_new: int, repeats: int) -> dict:
  """Speculative round overhead and verifier-only time per token (EOS masked)."""
  d, v = NoEos(drafter), NoEos(verifier)
  kw = dict(max_new_tokens=max_new, temperature=0.0)
  fns = {"spec": lambda: generate(d, v, ids, method="speculative", num_draft_tokens=gamma, **kw),
         "verifier": lambda: generate(None, v, ids, method="verifier", **kw)}
  rounds = float(np.mean(fns["spec"]().stats["rounds"]))
  ts = common.interleaved_times(fns, repeats)
  cache_len = max_new + gamma + 1
  t_d = step_time(drafter, ids, 1, cache_len, 32, repeats)
  t_vk = step_time(verifier, ids, gamma + 1, cache_len, 16, repeats)
  t_v1 = step_time(verifier, ids, 1, cache_len, 32, repeats)
  per_round = min(ts["spec"]) / rounds
  models = (gamma + 1) * t_d + t_vk
  per_token = min(ts["verifier"]) / max_new
  return dict(rounds=rounds, spec_ms_per_token=1e3 * min(ts["spec"]) / max_new,
              verifier_ms_per_token=1e3 * per_token, round_ms=1e3 * per_round,
              round_models_ms=1e3 * models, round_overhead=(per_round - models) / per_round,
              drafter_step_ms=1e3 * t_d, verifier_chunk_ms=1e3 * t_vk,
              verifier_step_ms=1e3 * t_v1, ar_overhead=(per_token - t_v1) / per_token)


def hf_generate(drafter: T5Model, verifier: T5Model, seq_len: int, max_new: int,
                repeats: int) -> dict:
  """HF eager generate (greedy, batch 1, bf16) on random weights of the same shapes."""
  import torch
  from transformers import T5Config as HFConfig
  from transformers import T5ForConditionalGeneration
  dev = "cuda" if torch.cuda.is_available() else "cpu"

  def build(c: T5Config):
    torch.manual_seed(0)
    cfg = {k: v for k, v in c.to_hf_dict().items() if k not in ("architectures", "model_type")}
    with torch.device(dev):  # initialise on the device: T5-large on a CPU takes minutes
      return T5ForConditionalGeneration(HFConfig(**cfg)).to(torch.bfloat16).eval()

  hv, hd = build(verifier.config), build(drafter.config)
  ids = torch.randint(3, verifier.config.vocab_size, (1, seq_len), device=dev)
  kw = dict(max_new_tokens=max_new, min_new_tokens=max_new, do_sample=False, num_beams=1)

  def run(**extra):
    def f():
      with torch.inference_mode():
        out = hv.generate(ids, past_key_values=common.hf_cache(), **kw, **extra)
      if dev == "cuda":
        torch.cuda.synchronize()
      return out
    return f

  out = {}
  fns = {"greedy": run(), "assisted": run(assistant_model=hd)}
  for k, f in list(fns.items()):
    try:
      f()
    except Exception as e:  # report, do not hide: e.g. assisted-generation limitations
      out[f"{k}_error"] = f"{type(e).__name__}: {e}"
      del fns[k]
  ts = common.interleaved_times(fns, repeats, warmup=False)
  for k, t in ts.items():
    out[f"{k}_ms_per_token"] = 1e3 * min(t) / max_new
  out["device"] = dev
  return out


def pair_report(name, drafter, verifier, args, bandwidth: float) -> dict:
  drafter, verifier = to_bf16(drafter), to_bf16(verifier)
  rep: dict = {"pair": name, "drafter": drafter.config.name, "verifier": verifier.config.name}
  cache_len = args.max_new_tokens + args.gamma + 1
  for batch in args.batches:
    ids = jax.random.randint(jax.random.PRNGKey(batch), (batch, args.input_length), 3,
                             verifier.config.vocab_size, jnp.int32)
    for chunk in (1, args.gamma + 1):
      t = step_time(verifier, ids, chunk, cache_len, args.inner, args.repeats)
      floor = step_bytes(verifier, batch, args.input_length, cache_len) / bandwidth
      rep[f"verifier_step_b{batch}_k{chunk}"] = dict(
          ms=1e3 * t, floor_ms=1e3 * floor, floor_ratio=t / floor,
          bytes=step_bytes(verifier, batch, args.input_length, cache_len))
    rep[f"ours_b{batch}"] = ours(drafter, verifier, ids, args.gamma, args.max_new_tokens,
                                 args.repeats)
    print(name, batch, {k: v for k, v in rep.items() if k.endswith(f"b{batch}") or
                        f"_b{batch}_" in k}, flush=True)
  if not args.skip_hf:
    rep["hf"] = hf_generate(drafter, verifier, args.input_length, args.max_new_tokens,
                            args.repeats)
    print(name, "hf", rep["hf"], flush=True)
  return rep


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--smoke", action="store_true", help="tiny shapes: a check on any machine")
  ap.add_argument("--gamma", type=int, default=5)
  ap.add_argument("--max-new-tokens", type=int, default=128)
  ap.add_argument("--input-length", type=int, default=32)
  ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
  ap.add_argument("--inner", type=int, default=64, help="steps per timed loop")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--pairs", default="t5,demo", help="t5 (small -> large), demo (bundled)")
  ap.add_argument("--skip-hf", action="store_true")
  ap.add_argument("--out", default=os.environ.get("OUT", "."))
  args = ap.parse_args(argv)
  if args.smoke:
    args.max_new_tokens, args.inner, args.repeats = 16, 8, 2

  t0 = time.perf_counter()
  report = {"machine": common.machine(), "args": vars(args), "pairs": []}
  bw = copy_bandwidth((8 << 20) if args.smoke else (1 << 30), args.repeats)
  report["copy_bandwidth_GBps"] = bw / 1e9
  print(f"copy bandwidth {bw / 1e9:.1f} GB/s (read + write)", flush=True)
  for name in args.pairs.split(","):
    if name == "t5":
      if args.smoke:
        d_cfg, v_cfg = SMOKE_DRAFTER, SMOKE_VERIFIER
      else:
        d_cfg, v_cfg = PRESETS["t5-small"], PRESETS["t5-large"]
      drafter = T5Model.init(d_cfg, jax.random.PRNGKey(0))
      verifier = T5Model.init(v_cfg, jax.random.PRNGKey(1))
      source = "random"
    elif name == "demo":
      drafter, verifier, source = common.demo_pair(random_weights=args.smoke)
    else:
      raise ValueError(f"--pairs: unknown pair {name!r}; use t5 and/or demo.")
    rep = pair_report(name, drafter, verifier, args, bw)
    rep["weights"] = source
    report["pairs"].append(rep)
  report["wall_s"] = time.perf_counter() - t0
  common.write_json(os.path.join(args.out, "gpu.json"), report)
  return report


if __name__ == "__main__":
  main()
