"""Our speculative decoding against Hugging Face assisted generation, same weights.

Exports the pair (bundled, or random weights of its shapes) to Hugging Face T5
directories with `models.t5.save_hf_t5`, loads them with transformers
unchanged (no missing / unexpected keys, checked), and decodes the same
validation inputs of the pair's corpus greedily at batch 1 with
  - ours: `generate(method="speculative", num_draft_tokens=γ)`, verifier-only,
          and prompt lookup (`method="prompt_lookup"`, no drafter);
  - HF:   `verifier.generate(ids, assistant_model=drafter)` twice: with HF's
          default assistant settings (what a user gets), and with a constant
          schedule of γ drafts and no confidence cut-off (the same algorithm
          as ours); plain greedy `verifier.generate(ids)`; and prompt lookup
          decoding (`prompt_lookup_num_tokens`, `max_matching_ngram_size`).
The column "HF / ours" divides each HF time by ours for the same algorithm
(assisted: speculative; greedy: verifier; prompt lookup: prompt lookup). HF's
prompt lookup searches the decoder's tokens (the output) only, ours the output
and then the source.
Greedy outputs must agree token for token (EOS included; we pad with 0 after
EOS, HF stops there); mismatches are listed. Times are per example, compile
excluded, methods interleaved, each timed call right after an untimed call of
the same method (a call that follows the other framework's runs ~25% slower
here); the ratio is measured in this one run. HF
cannot batch assisted generation; our batch-8 throughput is printed beside.

    python benchmarks/vs_hf.py --examples 32 --json out/vs_hf.json            # γ = 3
    python benchmarks/vs_hf.py --examples 32 --num-draft-tokens 5 --json out/vs_hf_g5.json

(BENCHMARKS.md records the committed runs' commands with --gamma, the former
name of --num-draft-tokens, which is still accepted.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.decoding import generate  # noqa: E402
from spec_cascade_jax.models.t5 import save_hf_t5  # noqa: E402


def load_hf(path: str):
  """T5ForConditionalGeneration from `path`, float32, eval; fails on key mismatches."""
  from transformers import T5ForConditionalGeneration
  return common.load_hf_clean(T5ForConditionalGeneration, path)


def hf_tokens(seq, max_new: int) -> np.ndarray:
  """HF output [1, 1 + n] (start token first, stops at EOS) -> our layout [max_new]."""
  out = np.zeros((max_new,), np.int32)
  gen = np.asarray(seq[0, 1:], np.int32)[:max_new]
  out[:len(gen)] = gen
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--examples", type=int, default=32)
  ap.add_argument("--max-input-tokens", type=int, default=48)
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--num-draft-tokens", type=int, default=3,
                  help="γ, the draft length of both (3: the fastest for ours on the bundled "
                       "pair, speed.py; HF's time hardly depends on it)")
  ap.add_argument("--lookup-num-draft-tokens", type=int, default=7,
                  help="prompt lookup's num_draft_tokens")
  ap.add_argument("--lookup-ngram-size", type=int, default=3, help="prompt lookup's ngram_size")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--batch", type=int, default=8, help="our batched throughput")
  ap.add_argument("--random-weights", action="store_true")
  ap.add_argument("--hf-dir", help="where to write the HF directories (default: a temp dir)")
  ap.add_argument("--json")
  args = ap.parse_args(argv)

  import torch
  import transformers
  drafter, verifier, source = common.demo_pair(args.random_weights)
  root = args.hf_dir or tempfile.mkdtemp(prefix="hf_pair_")
  save_hf_t5(drafter, os.path.join(root, "drafter"))
  save_hf_t5(verifier, os.path.join(root, "verifier"))
  hf_d, hf_v = load_hf(os.path.join(root, "drafter")), load_hf(os.path.join(root, "verifier"))
  examples = common.gettext_examples(args.examples, max_input_tokens=args.max_input_tokens)
  length = common.pad_batch([e["ids"] for e in examples]).shape[1]
  n, g = args.max_new_tokens, args.num_draft_tokens
  base = dict(max_new_tokens=n, do_sample=False, num_beams=1, eos_token_id=1, pad_token_id=0,
              decoder_start_token_id=0)
  same_algo = dict(num_assistant_tokens=g, num_assistant_tokens_schedule="constant",
                   assistant_confidence_threshold=0.0)

  def hf_call(ids, **kw):
    def run():
      with torch.inference_mode():
        return hf_v.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                            dtype=torch.long),
                             past_key_values=common.hf_cache(), **base, **kw)
    return run

  lg, ln = args.lookup_num_draft_tokens, args.lookup_ngram_size
  names = ("ours speculative", "ours verifier", "HF assisted (defaults)",
           f"HF assisted (γ={g} constant)", "HF greedy", f"ours prompt lookup γ={lg} n={ln}",
           f"HF prompt lookup γ={lg} n≤{ln}")
  # Each HF row against ours with the same algorithm.
  counterpart = {names[0]: names[0], names[1]: names[1], names[2]: names[0],
                 names[3]: names[0], names[4]: names[1], names[5]: names[5],
                 names[6]: names[5]}
  totals = {k: [0.0, 0.0] for k in names}
  tokens = {k: 0 for k in names}
  mismatches: dict[str, list[int]] = {k: [] for k in names}
  errors: dict[str, str] = {}
  for i, ex in enumerate(examples):
    ids = common.pad_batch([ex["ids"]], length)
    fns = {
        names[0]: lambda: generate(drafter, verifier, ids, method="speculative",
                                   num_draft_tokens=g, max_new_tokens=n, temperature=0.0),
        names[1]: lambda: generate(None, verifier, ids, method="verifier",
                                   max_new_tokens=n, temperature=0.0),
        names[2]: hf_call(ex["ids"], assistant_model=hf_d),
        names[3]: hf_call(ex["ids"], assistant_model=hf_d, **same_algo),
        names[4]: hf_call(ex["ids"]),
        names[5]: lambda: generate(None, verifier, ids, method="prompt_lookup",
                                   num_draft_tokens=lg, ngram_size=ln, max_new_tokens=n,
                                   temperature=0.0),
        names[6]: hf_call(ex["ids"], prompt_lookup_num_tokens=lg, max_matching_ngram_size=ln),
    }
    outs = {}
    for k, fn in list(fns.items()):
      try:
        outs[k] = fn()
      except Exception as e:  # report (e.g. transformers' assisted-generation bugs)
        errors.setdefault(k, f"{type(e).__name__}: {e}")
        del fns[k]
    ref = outs[names[1]].tokens[0]
    for k, o in outs.items():
      toks = o.tokens[0] if hasattr(o, "tokens") else hf_tokens(o.numpy(), n)
      is_eos = toks == 1
      tokens[k] += int(np.sum(np.cumsum(is_eos) - is_eos == 0))  # up to and with EOS
      if not np.array_equal(toks, ref):
        mismatches[k].append(i)
    # rewarm: each timed call follows an untimed one of the same method, so
    # neither framework is timed cold right after the other (common.py).
    times = common.interleaved_times(fns, args.repeats, warmup=False, rewarm=True)
    for k, t in times.items():
      totals[k][0] += min(t)
      totals[k][1] += float(np.median(t))

  # Our batched throughput on the same examples.
  rows_ids = [e["ids"] for e in examples]
  batches = [common.pad_batch(rows_ids[i:i + args.batch], length)
             for i in range(0, len(rows_ids), args.batch)]
  bfn = lambda: [generate(drafter, verifier, b, method="speculative", num_draft_tokens=g,
                          max_new_tokens=n, temperature=0.0) for b in batches]
  bt = common.interleaved_times({"b": bfn}, args.repeats)["b"]
  ours_tok = tokens[names[0]]

  info = common.machine()
  info["torch"], info["transformers"] = torch.__version__, transformers.__version__
  info["torch_threads"] = torch.get_num_threads()
  print(f"# {info['date']}  {info['cpu']} x{info['cpu_count']}  jax {info['jax']}  torch "
        f"{info['torch']} ({info['torch_threads']} threads)  transformers {info['transformers']}"
        f"  load {info.get('load_avg_1m')}  weights: {source}")
  spec = common.DEMO
  print(f"# {len(examples)} {spec.corpus} validation examples ({spec.drafter} -> "
        f"{spec.verifier}), greedy, batch 1, γ={g}, "
        f"max_new_tokens={n}, repeats={args.repeats}; mismatches vs our verifier-only output")
  rows = []
  for k in names:
    if k in errors and totals[k][1] == 0:
      rows.append(dict(name=k, error=errors[k]))
      continue
    rows.append(dict(name=k, ms=1e3 * totals[k][1] / len(examples),
                     ms_min=1e3 * totals[k][0] / len(examples),
                     tok_s=tokens[k] / totals[k][1], mismatches=len(mismatches[k]),
                     hf_over_ours=totals[k][1] / totals[counterpart[k]][1]))
  rows.append(dict(name=f"ours speculative, batch {args.batch}",
                   tok_s=ours_tok / float(np.median(bt))))
  print(common.format_table(rows, [("name", "method", ""), ("ms", "ms/ex (med)", ".1f"),
                                   ("ms_min", "ms/ex (min)", ".1f"), ("tok_s", "tok/s", ".0f"),
                                   ("hf_over_ours", "HF / ours", ".2f"),
                                   ("mismatches", "≠ours-verifier", "")]))
  for k, e in errors.items():
    print(f"ERROR {k}: {e}")
  for k, m in mismatches.items():
    if m:
      print(f"{k}: outputs differ on examples {m[:20]}")
  report = dict(machine=info, args=vars(args), weights=source, rows=rows,
                mismatch_examples=mismatches, errors=errors)
  if args.json:
    common.write_json(args.json, report)
  return report


if __name__ == "__main__":
  main()
