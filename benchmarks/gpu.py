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
  - at batch 1, `generate` with and without `pad_single_row` (one row decoded
    as two: generate's default on GPU), speculative and verifier-only;
  - the speculative round's overhead: greedy speculative decoding with EOS
    masked (every run decodes --max-new-tokens), time per round against
    (γ+1) drafter steps + one verifier chunk timed alone; verifier-only
    decoding per token against one verifier step;
  - Hugging Face eager `generate` (greedy, batch 1, --max-new-tokens forced
    with min_new_tokens) on the same shapes, bf16, ms per token; with the
    drafter as `assistant_model` too;
  - a profile of 16 batch-1 verifier steps (`jax.profiler`): kernels per
    step, busy time against the step's span, the top kernels (the trace is
    copied to --out as trace_<verifier>.json.gz);
  - with --xla-variants, the T5 verifier's batch-1 steps again under other
    XLA_FLAGS, each in its own process.
Writes gpu.json to --out (default $OUT, else the current directory), with
the XLA_FLAGS it ran under, after every section, so a run stopped early
keeps what it measured; a section that fails is recorded under "errors" and
the run goes on; --budget-s stops starting new sections (a lent machine's
minutes are few).

    python benchmarks/gpu.py --repeats 3 --inner 32 --budget-s 270   # device machine, ~4.5 min
    python benchmarks/gpu.py --smoke         # tiny shapes, any machine (CPU check)
"""

from __future__ import annotations

import argparse
import json
import os
import traceback
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.testing import NoEos  # noqa: E402
from spec_cascade_jax.decoding import generate  # noqa: E402
from spec_cascade_jax.models.t5 import PRESETS, T5Config, T5Model  # noqa: E402

SMOKE_DRAFTER = T5Config(name="smoke-d", vocab_size=512, d_model=64, d_kv=16, d_ff=128,
                         num_heads=4, num_layers=2, num_decoder_layers=1)
SMOKE_VERIFIER = T5Config(name="smoke-v", vocab_size=512, d_model=128, d_kv=32, d_ff=256,
                          num_heads=4, num_layers=2)


def to_bf16(model: T5Model) -> T5Model:
  """Parameters stored in bfloat16 (half the bytes per step), bf16 activations."""
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), model.params)
  return T5Model(config=model.config.replace(dtype="bfloat16"), params=params)


def random_model(config: T5Config, seed: int) -> T5Model:
  """Random bf16 weights of `config`'s shapes, one small jitted draw per leaf.

  Timing needs shapes, not a faithful init. The jitted `T5Model.init` took
  ~4 min to compile for T5-small and T5-large on an H200 (jax 0.11.2: one
  sampler per parameter); `T5Model.init(jit=False)` avoids that but draws
  float32. Here matrices get std 1/sqrt(fan_in) and vectors (layer-norm
  scales) ones, so activations stay finite in bf16.
  """
  shapes = jax.eval_shape(lambda: T5Model.init(config, jax.random.PRNGKey(0)).params)
  leaves, tree = jax.tree.flatten(shapes)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  out = []
  for key, leaf in zip(keys, leaves):
    if len(leaf.shape) == 1:
      out.append(jnp.ones(leaf.shape, jnp.bfloat16))
    else:
      std = 1.0 / np.sqrt(leaf.shape[0])
      out.append((jax.random.normal(key, leaf.shape, jnp.float32) * std).astype(jnp.bfloat16))
  return T5Model(config=config.replace(dtype="bfloat16"), params=jax.tree.unflatten(tree, out))


def t5_pair(smoke: bool = False) -> tuple[T5Model, T5Model]:
  """(drafter, verifier): T5-small and T5-large shapes (tiny ones with `smoke`),
  random bf16 weights."""
  d_cfg, v_cfg = (SMOKE_DRAFTER, SMOKE_VERIFIER) if smoke else (PRESETS["t5-small"],
                                                                  PRESETS["t5-large"])
  return random_model(d_cfg, 0), random_model(v_cfg, 1)


def matvec_time(d_in: int, d_out: int, rows: int, inner: int, repeats: int) -> float:
  """Seconds per bf16 [rows, d_in] x [d_in, d_out] product in a fori_loop (the logits'
  shape): a check that one-row products are not slower than a few rows."""
  w = jnp.ones((d_in, d_out), jnp.bfloat16) * jnp.bfloat16(0.01)
  x = jnp.ones((rows, d_in), jnp.bfloat16)

  @jax.jit
  def loop(x, w):
    def body(i, x):
      y = jnp.dot(x, w, preferred_element_type=jnp.float32)
      return x + y[:, :d_in].astype(x.dtype) * jnp.bfloat16(1e-3)
    return jax.lax.fori_loop(0, inner, body, x)

  ts = common.interleaved_times({"l": lambda: loop(x, w).block_until_ready()}, repeats)
  return min(ts["l"]) / inner


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


def profile_steps(model, ids, cache_len: int, inner: int, out_dir: str) -> dict:
  """Device-side time of `inner` verifier steps (batch 1, k = 1) from a profiler trace.

  Sums the durations of the events on accelerator tracks by name (kernels,
  copies): busy time per step against the wall time per step shows how much
  of a step is launch gaps rather than kernels.
  """
  import glob
  import gzip
  import json
  import shutil
  import tempfile
  run = lambda: common.step_loop(model, ids, chunk=1, cache_len=cache_len, inner=inner)
  run().block_until_ready()
  tmp = tempfile.mkdtemp()
  jax.profiler.start_trace(tmp, create_perfetto_trace=True)
  run().block_until_ready()
  jax.profiler.stop_trace()
  traces = glob.glob(os.path.join(tmp, "**", "*.json.gz"), recursive=True)
  if not traces:
    return {"error": f"no perfetto trace under the profiler's log dir ({len(os.listdir(tmp))} entries)"}
  shutil.copy(traces[0], os.path.join(out_dir, f"trace_{model.config.name}.json.gz"))
  with gzip.open(traces[0], "rt") as f:
    events = json.load(f)
  events = events.get("traceEvents", events) if isinstance(events, dict) else events
  meta = [e for e in events if e.get("ph") == "M"]
  pids = {e["pid"]: e.get("args", {}).get("name", "") for e in meta
          if e.get("name") == "process_name"}
  tids = {(e["pid"], e.get("tid")): e.get("args", {}).get("name", "") for e in meta
          if e.get("name") == "thread_name"}
  dev = {p for p, n in pids.items() if any(w in n.lower() for w in ("gpu", "device", "tpu"))}
  dev = dev or set(pids)  # a CPU run: the host's threads
  threads: dict = {}  # thread -> [events, busy µs, first start, last end]
  by_name: dict = {}
  for e in events:
    if e.get("ph") == "X" and e.get("pid") in dev and "dur" in e:
      th = f'{pids[e["pid"]]}/{tids.get((e["pid"], e.get("tid")), e.get("tid"))}'
      ts, dur = float(e["ts"]), float(e["dur"])
      t = threads.setdefault(th, [0, 0.0, ts, ts + dur])
      t[0], t[1], t[2], t[3] = t[0] + 1, t[1] + dur, min(t[2], ts), max(t[3], ts + dur)
      d = by_name.setdefault((th, e["name"]), [0, 0.0])
      d[0], d[1] = d[0] + 1, d[1] + dur
  top = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:25]
  return {"steps": inner,
          "threads": {k: {"events_per_step": v[0] / inner, "busy_us_per_step": v[1] / inner,
                          "span_us_per_step": (v[3] - v[2]) / inner}
                      for k, v in threads.items()},
          "top": [{"thread": k[0], "name": k[1][:120], "count": v[0],
                   "us_per_step": v[1] / inner} for k, v in top]}


def ours(drafter, verifier, ids, gamma: int, max_new: int, repeats: int,
         t_d: float, t_vk: float, t_v1: float) -> dict:
  """Speculative round overhead and verifier-only time per token (EOS masked).

  t_d, t_vk, t_v1: seconds of one drafter step, one verifier chunk of γ+1 and
  one verifier step, timed alone (`step_time`).
  """
  d, v = NoEos(drafter), NoEos(verifier)
  kw = dict(max_new_tokens=max_new, temperature=0.0)
  fns = {"spec": lambda: generate(d, v, ids, method="speculative", num_draft_tokens=gamma, **kw),
         "verifier": lambda: generate(None, v, ids, method="verifier", **kw)}
  if ids.shape[0] == 1:  # generate's default pads one row to two on GPU: time both
    one = dict(kw, pad_single_row=False)
    fns["spec_1row"] = lambda: generate(d, v, ids, method="speculative",
                                        num_draft_tokens=gamma, **one)
    fns["verifier_1row"] = lambda: generate(None, v, ids, method="verifier", **one)
  rounds = float(np.mean(fns["spec"]().stats["rounds"]))
  ts = common.interleaved_times(fns, repeats)
  per_round = min(ts["spec"]) / rounds
  models = (gamma + 1) * t_d + t_vk
  per_token = min(ts["verifier"]) / max_new
  out = dict(rounds=rounds, spec_ms_per_token=1e3 * min(ts["spec"]) / max_new,
             verifier_ms_per_token=1e3 * per_token, round_ms=1e3 * per_round,
             round_models_ms=1e3 * models, round_overhead=(per_round - models) / per_round,
             ar_overhead=(per_token - t_v1) / per_token)
  for k in ("spec_1row", "verifier_1row"):
    if k in ts:
      out[f"{k}_ms_per_token"] = 1e3 * min(ts[k]) / max_new
  return out


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


class Report:
  """gpu.json, rewritten after every section, so a run cut short keeps what it measured."""

  def __init__(self, args):
    self.args, self.t0 = args, time.perf_counter()
    self.data = {"machine": common.machine(), "args": vars(args), "pairs": {}, "errors": {},
                 "skipped": [], "xla_flags": os.environ.get("XLA_FLAGS", "")}

  def section(self, key: str, fn, store: dict):
    """Runs fn() into store[key] unless the time budget is spent; records errors."""
    if time.perf_counter() - self.t0 > self.args.budget_s:
      self.data["skipped"].append(key)
      print(f"[{self.elapsed():6.1f}s] skip {key}: budget spent", flush=True)
      return None
    t = time.perf_counter()
    try:
      store[key] = fn()
      v = store[key]
      shown = str(v)[:600] if isinstance(v, (dict, float, int, list)) else type(v).__name__
      print(f"[{self.elapsed():6.1f}s] {key} ({time.perf_counter() - t:.1f}s): {shown}",
            flush=True)
    except Exception as e:  # noqa: BLE001  (report and go on: one run on a lent machine)
      self.data["errors"][key] = "".join(traceback.format_exception(e))[-3000:]
      print(f"[{self.elapsed():6.1f}s] {key} FAILED: {type(e).__name__}: {e}", flush=True)
    self.data["wall_s"] = self.elapsed()
    common.write_json(os.path.join(self.args.out, "gpu.json"), self.data)
    return store.get(key)

  def elapsed(self) -> float:
    return time.perf_counter() - self.t0


def pair_report(report: Report, name, drafter, verifier, bandwidth: float) -> dict:
  args = report.args
  drafter, verifier = to_bf16(drafter), to_bf16(verifier)
  rep: dict = {"drafter": drafter.config.name, "verifier": verifier.config.name}
  report.data["pairs"][name] = rep
  gamma = args.num_draft_tokens
  cache_len = args.max_new_tokens + gamma + 1
  sections = args.sections.split(",")
  for batch in args.batches:
    ids = jax.random.randint(jax.random.PRNGKey(batch), (batch, args.input_length), 3,
                             verifier.config.vocab_size, jnp.int32)
    floor = step_bytes(verifier, batch, args.input_length, cache_len) / bandwidth
    steps = {}
    for chunk in (1, gamma + 1):
      t = report.section(f"verifier_step_b{batch}_k{chunk}", lambda: common.step_time(
          verifier, ids, chunk, cache_len, args.inner, args.repeats), steps)
      if t is not None:
        rep[f"verifier_step_b{batch}_k{chunk}"] = dict(
            ms=1e3 * t, floor_ms=1e3 * floor, floor_ratio=t / floor,
            bytes=step_bytes(verifier, batch, args.input_length, cache_len))
    if "ours" in sections and len(steps) == 2:
      t_d = report.section(f"drafter_step_b{batch}", lambda: common.step_time(
          drafter, ids, 1, cache_len, args.inner, args.repeats), steps)
      if t_d is not None:
        rep[f"drafter_step_b{batch}_ms"] = 1e3 * t_d
        report.section(f"ours_b{batch}", lambda: ours(
            drafter, verifier, ids, gamma, args.max_new_tokens, args.repeats, t_d,
            steps[f"verifier_step_b{batch}_k{gamma + 1}"],
            steps[f"verifier_step_b{batch}_k1"]), rep)
    if "profile" in sections and batch == 1:
      report.section("profile_b1_k1", lambda: profile_steps(
          verifier, ids, cache_len, 16, args.out), rep)
    if "hf" in sections and batch == args.batches[0]:  # before larger batches: a key target
      report.section("hf", lambda: hf_generate(drafter, verifier, args.input_length,
                                               args.max_new_tokens, args.repeats), rep)
  return rep


def xla_variant(args, flags: str, index: int) -> dict:
  """The T5 verifier's batch-1 step times in a subprocess run with XLA_FLAGS=flags."""
  import subprocess
  out = os.path.join(args.out, f"variant{index}")
  cmd = [sys.executable, os.path.abspath(__file__), "--pairs", "t5", "--batches", "1",
         "--sections", "steps", "--repeats", str(args.repeats), "--inner", str(args.inner),
         "--out", out] + (["--smoke"] if args.smoke else [])
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip())
  try:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=args.variant_timeout_s)
    rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
  except subprocess.TimeoutExpired as e:
    rc, tail = "timeout", str(e.stdout or "")[-1500:]
  res: dict = {"rc": rc}
  path = os.path.join(out, "gpu.json")
  if os.path.isfile(path):
    with open(path) as f:
      res["steps"] = {k: v for k, v in json.load(f)["pairs"].get("t5", {}).items()
                      if k.startswith("verifier_step")}
  if rc != 0:
    res["output_tail"] = tail
  return res


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--smoke", action="store_true", help="tiny shapes: a check on any machine")
  ap.add_argument("--num-draft-tokens", type=int, default=5, help="γ")
  ap.add_argument("--max-new-tokens", type=int, default=128)
  ap.add_argument("--input-length", type=int, default=32)
  ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
  ap.add_argument("--inner", type=int, default=64, help="steps per timed loop")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--pairs", default="t5,demo", help="t5 (small -> large), demo (bundled)")
  ap.add_argument("--sections", default="steps,matvec,ours,hf,profile",
                  help="what to measure beyond the verifier steps: matvec, ours, hf, profile")
  ap.add_argument("--skip-hf", action="store_true", help="same as leaving hf out of --sections")
  ap.add_argument("--budget-s", type=float, default=1e9,
                  help="start no new section after this many seconds (a lent machine's time)")
  ap.add_argument("--xla-variants", default="",
                  help="(write --xla-variants=...) ';'-separated XLA_FLAGS settings: each reruns the T5 verifier's "
                       "batch-1 steps in a subprocess with those flags (a flag this XLA "
                       "does not know fails that run alone)")
  ap.add_argument("--variant-timeout-s", type=float, default=120)
  ap.add_argument("--out", default=os.environ.get("OUT", "."))
  args = ap.parse_args(argv)
  if args.smoke:
    args.max_new_tokens, args.inner, args.repeats = 16, 8, 2
  if args.skip_hf:
    args.sections = ",".join(x for x in args.sections.split(",") if x != "hf")
  os.makedirs(args.out, exist_ok=True)

  report = Report(args)
  print(report.data["machine"], flush=True)
  bw = report.section("copy_bandwidth_GBps", lambda: copy_bandwidth(
      (8 << 20) if args.smoke else (1 << 30), args.repeats) / 1e9, report.data)
  bw = 1e9 * (bw or float("nan"))
  if "matvec" in args.sections:
    mv = report.data.setdefault("logits_matvec_us", {})
    for rows in (1, 6, 8):
      report.section(str(rows), lambda: 1e6 * matvec_time(
          1024, 32128, rows, args.inner, args.repeats), mv)
  for name in args.pairs.split(","):
    if name == "t5":
      pair = report.section("init_t5", lambda: t5_pair(args.smoke), {})
      drafter, verifier = pair if pair else (None, None)
      source = "random"
    elif name == "demo":
      drafter, verifier, source = common.demo_pair(random_weights=args.smoke)
    else:
      raise ValueError(f"--pairs: unknown pair {name!r}; use t5 and/or demo.")
    if drafter is None or verifier is None:
      continue  # the failure is in gpu.json's errors
    pair_report(report, name, drafter, verifier, bw)["weights"] = source
  variants = report.data.setdefault("xla_variants", {})
  for i, flags in enumerate(f for f in args.xla_variants.split(";") if f.strip()):
    report.section(flags.strip(), lambda: xla_variant(args, flags.strip(), i), variants)
  report.data["wall_s"] = report.elapsed()
  common.write_json(os.path.join(args.out, "gpu.json"), report.data)
  return report.data


if __name__ == "__main__":
  main()
