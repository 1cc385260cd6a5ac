"""Our speculative decoding of decoder-only LMs against Hugging Face assisted generation.

The decoder-only counterpart of `vs_hf.py` (T5): same protocol, flags and
JSON conventions. A Gemma-2-shaped verifier and drafter with random weights
are made and saved by transformers itself (`Gemma2ForCausalLM`, no hub),
loaded by us with `spec_cascade_jax.load_model(dir)` and by transformers with
no missing or unexpected keys (checked), and both decode the same random-token
prompts greedily:
  - batch 1, per prompt: ours `generate(method="speculative",
    num_draft_tokens=γ, input_lengths=..., eos_id=...)` and verifier-only,
    against HF `verifier.generate(ids, assistant_model=drafter,
    num_assistant_tokens=γ, num_assistant_tokens_schedule="constant",
    assistant_confidence_threshold=0)` (the same algorithm) and plain greedy
    `verifier.generate(ids)`;
  - batch 8: our speculative and verifier-only throughput against HF greedy
    (HF cannot batch assisted generation), prompts right-padded for us
    (input_lengths), left-padded for HF (attention_mask).

The pair. The verifier has `--verifier-layers` layers; the drafter IS its first
`--drafter-layers` layers with the same embeddings, final norm and output head
(a state-dict subset, so the drafter is that much cheaper per token). With
random weights the two would agree on almost no token, so the verifier's
further layers write into the residual stream at a reduced scale: their
post-attention and post-feedforward norm gains are set to `--upper-scale`
(Gemma 2 norms multiply by 1 + w, so w = scale - 1). They still do all of
their compute; only their effect on the argmax is small, and the drafter's
greedy token equals the verifier's on most positions (the acceptance rate is
measured and recorded). Two departures from Gemma 2, both for random weights:
the output head is untied from the input embeddings (tied random embeddings,
scaled by sqrt(hidden), make a greedy model repeat its last token forever),
and the EOS row of the head is zero, so EOS's logit is exactly 0 and never
the greedy argmax among `--vocab-size` random logits: every call generates
exactly `--max-new-tokens` tokens on both sides, with EOS handling switched on
(checked: each output has that length).

Greedy outputs must agree token for token: ours speculative, ours
verifier-only, HF assisted and HF greedy (the reference); mismatches are
listed. Times are per prompt, compile excluded (every shape runs once
untimed), methods interleaved ours / HF, each timed call right after an
untimed call of the same method (`common.interleaved_times(rewarm=True)`, as
vs_hf.py: a call right after the other framework's runs slower), the median
of `--repeats` kept per prompt. Each ratio is Σ HF / Σ ours over the prompts
with a 95% bootstrap interval over prompts (evaluation/latency.py
`ratio_interval`), beside the median and interquartile range of the
per-prompt ratios; all measured in this one run (docs/design.md §6.4).

Threads. By default (`--torch-threads`, auto) torch gets the faster of one
thread and its own default, chosen by timing HF greedy on the first prompt
both ways before anything else is timed (recorded as machine.torch_threads
and machine.torch_threads_probe_s). On the project's 2-core machine the
answer depends on the load: quiet, HF greedy took 0.60 s for 40 tokens with 2
threads against 0.98 s with 1; under `nice` beside other work (load 5), 12-32 s
with 2 threads (each op waits for a descheduled thread) against 1.0-1.5 s
with 1 (2026-12-02). Our decoding is not sensitive to this: XLA_FLAGS that
force XLA's CPU runtime onto one thread (--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1) changed our batch-1 and batch-8 times by at
most 5% in both states.

    python benchmarks/lm_vs_hf.py --json benchmarks/results/lm_vs_hf.json
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
import spec_cascade_jax as scj  # noqa: E402
from spec_cascade_jax.evaluation import latency  # noqa: E402

EOS, BOS, PAD = 1, 2, 0  # Gemma's ids


def build_pair(root: str, args) -> dict:
  """Saves the random Gemma-2-shaped verifier and its first-layers drafter
  (module docstring) under root/verifier and root/drafter; returns their sizes."""
  import torch
  import transformers

  def config(layers: int):
    return transformers.Gemma2Config(
        vocab_size=args.vocab_size, hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size, num_hidden_layers=layers,
        num_attention_heads=args.num_heads, num_key_value_heads=args.num_kv_heads,
        head_dim=args.head_dim, query_pre_attn_scalar=args.head_dim,
        max_position_embeddings=2048, tie_word_embeddings=False,
        eos_token_id=EOS, bos_token_id=BOS, pad_token_id=PAD)

  if not 0 < args.drafter_layers < args.verifier_layers:
    raise ValueError(f"need 0 < --drafter-layers < --verifier-layers; got "
                     f"{args.drafter_layers}, {args.verifier_layers}.")
  torch.manual_seed(args.seed)
  verifier = transformers.Gemma2ForCausalLM(config(args.verifier_layers)).float().eval()
  with torch.no_grad():
    verifier.lm_head.weight[EOS].zero_()  # EOS's logit is exactly 0: never the argmax
    for layer in verifier.model.layers[args.drafter_layers:]:
      layer.post_attention_layernorm.weight.fill_(args.upper_scale - 1.0)
      layer.post_feedforward_layernorm.weight.fill_(args.upper_scale - 1.0)
  drafter = transformers.Gemma2ForCausalLM(config(args.drafter_layers)).float().eval()
  own = drafter.state_dict()
  drafter.load_state_dict({k: v for k, v in verifier.state_dict().items() if k in own},
                          strict=True)
  sizes = {}
  for name, model in (("verifier", verifier), ("drafter", drafter)):
    model.save_pretrained(os.path.join(root, name))
    total = sum(p.numel() for p in model.parameters())
    sizes[name] = dict(layers=model.config.num_hidden_layers, params_M=total / 1e6,
                       # What a decode step reads: all but the input embedding table.
                       step_params_M=(total - model.model.embed_tokens.weight.numel()) / 1e6)
  return sizes


def load_hf_lm(path: str):
  """AutoModelForCausalLM from `path`, float32, eval; fails on key mismatches."""
  from transformers import AutoModelForCausalLM
  return common.load_hf_clean(AutoModelForCausalLM, path)


def random_prompts(args) -> list[list[int]]:
  """`--examples` prompts: BOS, then random ids in [3, vocab), lengths uniform
  in [--min-prompt-tokens, --max-prompt-tokens]."""
  rng = np.random.default_rng(args.seed)
  lengths = rng.integers(args.min_prompt_tokens, args.max_prompt_tokens + 1, args.examples)
  return [[BOS] + rng.integers(3, args.vocab_size, int(n) - 1).tolist() for n in lengths]


def pick_torch_threads(hf_v, prompt, max_new_tokens: int) -> dict[str, float]:
  """Sets torch's threads to the faster of 1 and torch's default for HF greedy
  on `prompt` (the better of two timed calls each, after an untimed one; a
  setting whose untimed call takes over 3× the best so far is not timed
  further); returns {threads: seconds}."""
  import torch
  ids = torch.tensor([prompt], dtype=torch.long)

  def run():
    with torch.inference_mode():
      hf_v.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                    do_sample=False, eos_token_id=EOS, pad_token_id=PAD)

  seconds: dict[str, float] = {}
  for n in sorted({1, torch.get_num_threads()}):
    torch.set_num_threads(n)
    first = common.interleaved_times({"g": run}, 1, warmup=False)["g"][0]
    if seconds and first > 3 * min(seconds.values()):
      seconds[str(n)] = first
      continue
    seconds[str(n)] = min(common.interleaved_times({"g": run}, 2, warmup=False)["g"])
  torch.set_num_threads(int(min(seconds, key=seconds.get)))
  return seconds


def spread(hf_s, ours_s) -> dict:
  """HF / ours over prompts: Σ ratio with a 95% bootstrap interval, and the
  median and quartiles of the per-prompt ratios."""
  hf_s, ours_s = np.asarray(hf_s), np.asarray(ours_s)
  ratio, lo, hi = latency.ratio_interval(hf_s, ours_s)
  per = hf_s / ours_s
  return dict(ratio=ratio, interval=[lo, hi], confidence=latency.CONFIDENCE,
              median=float(np.median(per)),
              iqr=[float(np.percentile(per, 25)), float(np.percentile(per, 75))],
              per_example=[round(float(x), 4) for x in per])


def markdown_table(rows, columns) -> str:
  """rows of dicts -> a markdown table. columns: (key, header, format spec)."""
  def cell(r, key, fmt):
    v = r.get(key)
    return "-" if v is None else format(v, fmt) if fmt else str(v)
  lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
  return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
  """The flags, also the pair's shape for other benchmarks (draft_policies.py)."""
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--examples", type=int, default=8, help="prompts")
  ap.add_argument("--min-prompt-tokens", type=int, default=8)
  ap.add_argument("--max-prompt-tokens", type=int, default=32)
  ap.add_argument("--max-new-tokens", type=int, default=40)
  ap.add_argument("--num-draft-tokens", type=int, default=3, help="γ, the draft length of both")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--batch", type=int, default=8, help="the throughput comparison's batch")
  ap.add_argument("--vocab-size", type=int, default=16384)
  ap.add_argument("--hidden-size", type=int, default=512)
  ap.add_argument("--intermediate-size", type=int, default=2048)
  ap.add_argument("--num-heads", type=int, default=8)
  ap.add_argument("--num-kv-heads", type=int, default=4)
  ap.add_argument("--head-dim", type=int, default=64)
  ap.add_argument("--verifier-layers", type=int, default=12)
  ap.add_argument("--drafter-layers", type=int, default=1)
  ap.add_argument("--upper-scale", type=float, default=0.02,
                  help="norm gain of the verifier's layers past the drafter's (see above)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--torch-threads", type=int,
                  help="torch's intra-op threads; 0: torch's default; default: the faster of "
                       "1 and torch's default (see above)")
  ap.add_argument("--hf-dir", help="where to write the HF directories, kept (default: a temp "
                                   "dir, removed)")
  ap.add_argument("--json")
  return ap


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  args = make_parser().parse_args(argv)
  start = time.perf_counter()
  load_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None

  import flax
  import torch
  import transformers
  transformers.logging.set_verbosity_error()  # assisted generation's deprecation notes
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  # Without --hf-dir the directories (~320 MB at the default sizes) are
  # removed once both sides have loaded them.
  tmp = None if args.hf_dir else tempfile.TemporaryDirectory(prefix="hf_lm_pair_")
  root = args.hf_dir or tmp.name
  sizes = build_pair(root, args)
  drafter = scj.load_model(os.path.join(root, "drafter"))
  verifier = scj.load_model(os.path.join(root, "verifier"))
  hf_d = load_hf_lm(os.path.join(root, "drafter"))
  hf_v = load_hf_lm(os.path.join(root, "verifier"))
  if tmp is not None:
    tmp.cleanup()
  prompts = random_prompts(args)
  length = max(map(len, prompts))  # one padded shape: one compilation per method
  probe = None if args.torch_threads is not None else pick_torch_threads(hf_v, prompts[0],
                                                                        args.max_new_tokens)
  n, g = args.max_new_tokens, args.num_draft_tokens

  def ours(model_d, method, ids, lengths):
    return lambda: scj.generate(model_d, verifier, ids, method=method, num_draft_tokens=g,
                                max_new_tokens=n, temperature=0.0, input_lengths=lengths,
                                eos_id=EOS)

  def hf(ids, mask, **kw):
    def run():
      with torch.inference_mode():
        return hf_v.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                             num_beams=1, eos_token_id=EOS, pad_token_id=PAD, **kw)
    return run

  same_algo = dict(assistant_model=hf_d, num_assistant_tokens=g,
                   num_assistant_tokens_schedule="constant", assistant_confidence_threshold=0.0)
  spec, ver = "ours speculative", "ours verifier"
  assisted, greedy = f"HF assisted (γ={g} constant)", "HF greedy"
  names = (spec, assisted, ver, greedy)  # ours / HF alternate
  medians = {k: [] for k in names}
  mins = {k: [] for k in names}
  mismatches: dict[str, list[int]] = {k: [] for k in names}
  short: dict[str, list[int]] = {k: [] for k in names}
  refs, stats = [], {"accepted": 0, "draft_tokens": 0, "rounds": 0, "num_tokens": 0}
  for i, p in enumerate(prompts):
    ids = common.pad_batch([p], length)
    lengths = np.array([len(p)], np.int32)
    tp = torch.tensor([p], dtype=torch.long)
    mask = torch.ones_like(tp)
    fns = {spec: ours(drafter, "speculative", ids, lengths), assisted: hf(tp, mask, **same_algo),
           ver: ours(None, "verifier", ids, lengths), greedy: hf(tp, mask)}
    # The untimed first calls give the outputs (and compile our shapes).
    outs = {}
    for k, fn in fns.items():
      o = fn()
      if hasattr(o, "tokens"):
        outs[k] = o.tokens[0][:int(o.stats["num_tokens"][0])]
      else:
        outs[k] = o[0, len(p):].numpy()
    res = fns[spec]()
    for k in stats:
      stats[k] += int(res.stats[k][0])
    refs.append(outs[greedy])
    for k, toks in outs.items():
      if len(toks) != n:
        short[k].append(i)
      if not np.array_equal(toks, outs[greedy]):
        mismatches[k].append(i)
    times = common.interleaved_times(fns, args.repeats, warmup=False, rewarm=True)
    for k, t in times.items():
      medians[k].append(float(np.median(t)))
      mins[k].append(float(min(t)))

  # Batch throughput on the same prompts: ours right-padded, HF left-padded.
  batches = [prompts[i:i + args.batch] for i in range(0, len(prompts), args.batch)]
  b_inputs = []
  for rows in batches:
    lengths = np.array([len(r) for r in rows], np.int32)
    left = torch.zeros((len(rows), length), dtype=torch.long)
    mask = torch.zeros_like(left)
    for j, r in enumerate(rows):
      left[j, length - len(r):] = torch.tensor(r)
      mask[j, length - len(r):] = 1
    b_inputs.append((common.pad_batch(rows, length), lengths, left, mask))
  b_spec, b_ver, b_greedy = (f"{spec}, batch {args.batch}", f"{ver}, batch {args.batch}",
                             f"{greedy}, batch {args.batch}")
  b_fns = {b_spec: lambda: [ours(drafter, "speculative", x, ln)() for x, ln, _, _ in b_inputs],
           b_greedy: lambda: [hf(t, m)() for _, _, t, m in b_inputs],
           b_ver: lambda: [ours(None, "verifier", x, ln)() for x, ln, _, _ in b_inputs]}
  b_outs = {}
  for k, fn in b_fns.items():
    out = fn()
    if k == b_greedy:
      b_outs[k] = [row.numpy() for o in out for row in o[:, length:]]
    else:
      b_outs[k] = [o.tokens[j][:int(o.stats["num_tokens"][j])]
                   for o in out for j in range(o.tokens.shape[0])]
  for k, rows in b_outs.items():
    mismatches[k] = [i for i, (a, b) in enumerate(zip(rows, refs)) if not np.array_equal(a, b)]
    short[k] = [i for i, a in enumerate(rows) if len(a) != n]
  b_times = common.interleaved_times(b_fns, args.repeats, warmup=False, rewarm=True)

  info = common.machine()
  info.update(torch=torch.__version__, transformers=transformers.__version__,
              flax=flax.__version__, numpy=np.__version__, torch_threads=torch.get_num_threads(),
              hf_attn_implementation=hf_v.config._attn_implementation,
              system=platform.platform(terse=True))
  info["description"] = latency.describe_machine(latency.machine())
  info["load_avg_1m_start"] = load_start
  info["torch_threads_probe_s"] = probe
  command = "python benchmarks/lm_vs_hf.py " + " ".join(shlex.quote(a) for a in argv)
  tokens = n * len(prompts)
  rows = []
  counterpart = {spec: spec, assisted: spec, ver: ver, greedy: ver}
  for k in names:
    rows.append(dict(name=k, ms=1e3 * float(np.mean(medians[k])),
                     ms_min=1e3 * float(np.mean(mins[k])), tok_s=tokens / sum(medians[k]),
                     hf_over_ours=sum(medians[k]) / sum(medians[counterpart[k]]),
                     mismatches=len(mismatches[k])))
  for k in (b_spec, b_ver, b_greedy):
    rows.append(dict(name=k, tok_s=tokens / float(np.median(b_times[k])),
                     mismatches=len(mismatches[k])))
  b_ours_over_hf = {k: float(np.median(b_times[b_greedy]) / np.median(b_times[k]))
                    for k in (b_spec, b_ver)}
  ratios = {f"{assisted} / {spec}": spread(medians[assisted], medians[spec]),
            f"{greedy} / {ver}": spread(medians[greedy], medians[ver]),
            f"{ver} / {spec}": spread(medians[ver], medians[spec]),
            f"{greedy} / {assisted}": spread(medians[greedy], medians[assisted])}
  acceptance = stats["accepted"] / max(stats["draft_tokens"], 1)
  per_call = stats["num_tokens"] / max(stats["rounds"], 1)
  identical = not any(mismatches.values()) and not any(short.values())

  print(f"# {info['date']}  {info['cpu']} x{info['cpu_count']}  jax {info['jax']}  torch "
        f"{info['torch']} ({info['torch_threads']} threads)  transformers "
        f"{info['transformers']}  load {info.get('load_avg_1m')} (at the start {load_start})")
  print(f"# random Gemma-2-shaped pair: verifier {sizes['verifier']['layers']} layers "
        f"({sizes['verifier']['params_M']:.1f}M params), drafter its first "
        f"{sizes['drafter']['layers']} ({sizes['drafter']['params_M']:.1f}M), vocab "
        f"{args.vocab_size}, hidden {args.hidden_size}; upper-layer scale {args.upper_scale:g}: "
        f"acceptance {100 * acceptance:.1f}%, {per_call:.2f} tokens per verifier call")
  print(f"# {len(prompts)} random prompts of {args.min_prompt_tokens}-{args.max_prompt_tokens} "
        f"tokens, greedy, γ={g}, {n} new tokens each (EOS cannot occur), repeats={args.repeats}; "
        f"≠ HF greedy: prompts whose output differs from HF greedy batch 1")
  print()
  print(markdown_table(rows, [("name", "method", ""), ("ms", "ms/prompt (med)", ".1f"),
                              ("ms_min", "ms/prompt (min)", ".1f"), ("tok_s", "tok/s", ".0f"),
                              ("hf_over_ours", "HF / ours", ".2f"),
                              ("mismatches", "≠ HF greedy", "")]))
  print()
  print(markdown_table([dict(name=k, **v, lo=v["interval"][0], hi=v["interval"][1],
                             q1=v["iqr"][0], q3=v["iqr"][1]) for k, v in ratios.items()],
                       [("name", "ratio of times", ""), ("ratio", "Σ ratio", ".2f"),
                        ("lo", "95% low", ".2f"), ("hi", "95% high", ".2f"),
                        ("median", "per-prompt median", ".2f"), ("q1", "IQR low", ".2f"),
                        ("q3", "IQR high", ".2f")]))
  print()
  print(f"batch {args.batch}: ours speculative {b_ours_over_hf[b_spec]:.2f}× and ours verifier "
        f"{b_ours_over_hf[b_ver]:.2f}× HF greedy's throughput")
  print("outputs identical token for token: " + ("yes" if identical else "NO"))
  for k, m in mismatches.items():
    if m:
      print(f"{k}: outputs differ from HF greedy on prompts {m[:20]}")
  for k, m in short.items():
    if m:
      print(f"{k}: fewer than {n} tokens on prompts {m[:20]}")
  report = dict(machine=info, command=command, args=vars(args), pair=sizes,
                acceptance=acceptance, tokens_per_verifier_call=per_call, rows=rows,
                ratios=ratios, batch_ours_over_hf=b_ours_over_hf, outputs_identical=identical,
                mismatch_examples=mismatches, short_examples=short,
                wall_s=time.perf_counter() - start)
  if args.json:
    common.write_json(args.json, report)
  return report


if __name__ == "__main__":
  main()
