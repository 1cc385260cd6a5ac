"""Greedy quality of the bundled pair (or any models) on gettext_en_de.

    python benchmarks/quality.py [--models demo-drafter,demo-verifier] [--json out.json]

For each model: parameters, bytes on disk, and sacrebleu corpus BLEU / chrF at
greedy decoding (64 new tokens; the training recipe's decoding and BLEU,
sacrebleu's default 13a tokenizer) on
the full validation and test splits (tests/test_bundled_models.py checks
floors on the validation split), plus BLEU on the first 100 validation
examples, which shows how unrepresentative that sorted slice is. Also the
teacher-forced argmax agreement of the first model with the last one along
the last one's greedy outputs: the per-token acceptance that lossless
speculative decoding can expect with that pair.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import sacrebleu  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.data.dataset import load_split  # noqa: E402
from spec_cascade_jax.data.vocab import load_vocabulary  # noqa: E402
from spec_cascade_jax.models.loading import ASSETS_DIR, load_model  # noqa: E402
from spec_cascade_jax.models.t5 import count_params  # noqa: E402
from spec_cascade_jax.training.recipes import (  # noqa: E402
    corpus_bleu, greedy_ids, greedy_translate)


def disk_bytes(name: str) -> int | None:
  folder = name if os.path.isdir(name) else os.path.join(ASSETS_DIR, name)
  if not os.path.isdir(folder):
    return None
  return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def agreement(drafter, verifier, vocab, sources, max_new: int = 64) -> float:
  """Share of the verifier's greedy tokens (EOS included) that the drafter's
  argmax reproduces when fed the verifier's own prefix (teacher forcing)."""
  rows = [vocab.encode(x)[:127] + [1] for x in sources]
  hits = common.drafter_hits(drafter, rows, greedy_ids(verifier, rows, max_new_tokens=max_new))
  return float(np.concatenate(hits).mean()) if hits else 0.0


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--models", default="demo-drafter,demo-verifier")
  ap.add_argument("--splits", default="validation,test")
  ap.add_argument("--agreement-examples", type=int, default=0,
                  help="validation examples for the agreement (0 = all)")
  ap.add_argument("--json")
  args = ap.parse_args(argv)
  vocab = load_vocabulary("demo")
  names = args.models.split(",")
  models = {n: load_model(n) for n in names}
  rows = []
  for n, m in models.items():
    row = {"model": n, "params_M": count_params(m.params) / 1e6,
           "disk_MiB": (disk_bytes(n) or 0) / 2**20,
           "layers": f"{m.config.num_layers}+{m.config.n_decoder_layers}",
           "d_model": m.config.d_model}
    for split in args.splits.split(","):
      data = load_split(split)
      preds = greedy_translate(m, vocab, [e["en"] for e in data], max_new_tokens=64)
      refs = [e["de"] for e in data]
      row[f"{split}_bleu"] = corpus_bleu(preds, refs)
      row[f"{split}_chrf"] = float(sacrebleu.corpus_chrf(preds, [refs]).score)
      if split == "validation":
        row["validation100_bleu"] = corpus_bleu(preds[:100], refs[:100])
    rows.append(row)
    print(n, {k: v for k, v in row.items() if k != "model"}, flush=True)
  info = common.machine()
  print(f"\n# {info['date']}  {info['cpu']} x{info['cpu_count']}  jax {info['jax']}")
  cols = [("model", "model", ""), ("layers", "layers", ""), ("d_model", "d", ""),
          ("params_M", "params M", ".2f"), ("disk_MiB", "MiB", ".1f")]
  for split in args.splits.split(","):
    cols += [(f"{split}_bleu", f"{split} BLEU", ".2f"), (f"{split}_chrf", "chrF", ".2f")]
  cols.append(("validation100_bleu", "val[:100] BLEU", ".2f"))
  print(common.format_table(rows, cols))
  report = {"machine": info, "rows": rows}
  if len(names) >= 2:
    val = [e["en"] for e in load_split("validation")]
    val = val[:args.agreement_examples] if args.agreement_examples else val
    report["agreement"] = agreement(models[names[0]], models[names[-1]], vocab, val)
    report["agreement_examples"] = len(val)
    print(f"teacher-forced argmax agreement of {names[0]} with {names[-1]}'s greedy "
          f"output ({len(val)} validation examples): {report['agreement']:.3f}")
  if args.json:
    common.write_json(args.json, report)
  return report


if __name__ == "__main__":
  main()
