"""Greedy quality of the bundled pair (or any models) on the gettext corpus.

    python benchmarks/quality.py [--models DRAFTER,VERIFIER] [--json out.json]

(default: the bundled pair, `common.DEMO`, its vocabulary and corpus)

For each model and split (default: the whole in-domain validation split and
the whole test split of packages never seen in training):
- parameters, bytes on disk;
- BLEU / chrF at greedy decoding (64 new tokens; the project's one BLEU,
  `evaluation.metrics.bleu`), beside the BLEU of copying the English unchanged;
- the share of outputs without EOS within 64 tokens (loops), and the share that
  keep their source's format placeholders;
- for the first model against the last: teacher-forced argmax agreement along
  the last one's greedy outputs, the per-token acceptance that lossless
  speculative decoding can expect at T = 0.
All of it comes from `spec_cascade_jax.evaluation.translation`.

The JSON names each model by its parameter fingerprint and keeps the first
outputs of each split (`samples`), so a test can check that the figures belong
to the bundled files. A whole split takes minutes (the v2 test split: 33,853
examples): the JSON is written after each split, and a rerun with the same
--json, models, corpus and example count keeps the splits already done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from spec_cascade_jax.data.dataset import load_split  # noqa: E402
from spec_cascade_jax.data.vocab import load_vocabulary  # noqa: E402
from spec_cascade_jax.evaluation import translation  # noqa: E402
from spec_cascade_jax.models.loading import ASSETS_DIR, load_model  # noqa: E402
from spec_cascade_jax.models.t5 import count_params  # noqa: E402
from spec_cascade_jax.training.distill import params_fingerprint  # noqa: E402


def disk_bytes(name: str) -> int | None:
  folder = name if os.path.isdir(name) else os.path.join(ASSETS_DIR, name)
  if not os.path.isdir(folder):
    return None
  return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def finished_splits(path: str | None, report: dict) -> dict:
  """The splits of an earlier run at `path` that this run would repeat
  exactly (same models by fingerprint, vocabulary and corpus); else {}."""
  if not path or not os.path.exists(path):
    return {}
  with open(path) as f:
    old = json.load(f)
  # `order` too: the agreement is the first model's against the last one's.
  same = (all(old.get(k) == report[k] for k in ("vocabulary", "corpus", "order"))
          and {n: m.get("params_sha256") for n, m in old.get("models", {}).items()}
          == {n: m["params_sha256"] for n, m in report["models"].items()})
  return old.get("splits", {}) if same else {}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  pair = common.DEMO
  ap.add_argument("--models", default=f"{pair.drafter},{pair.verifier}")
  ap.add_argument("--vocabulary", default=pair.vocabulary)
  ap.add_argument("--corpus", default=pair.corpus, help="bundled corpus name or directory "
                  "(default: the bundled pair's)")
  ap.add_argument("--splits", default="validation,test")
  ap.add_argument("--examples", type=int, default=0,
                  help="examples per split, spread over it (0 = all)")
  ap.add_argument("--samples", type=int, default=16,
                  help="outputs kept per split and model, for later checks")
  ap.add_argument("--json")
  args = ap.parse_args(argv)
  vocab = load_vocabulary(args.vocabulary)
  names = args.models.split(",")
  models = {n: load_model(n) for n in names}
  report = {"machine": common.machine(), "models": {}, "splits": {},
            "vocabulary": args.vocabulary, "corpus": args.corpus, "order": names}
  for n, m in models.items():
    report["models"][n] = {"params_M": count_params(m.params) / 1e6,
                           "disk_MiB": (disk_bytes(n) or 0) / 2**20,
                           "layers": f"{m.config.num_layers}+{m.config.n_decoder_layers}",
                           "d_model": m.config.d_model,
                           "params_sha256": params_fingerprint(m.params)}
  done = finished_splits(args.json, report)
  from spec_cascade_jax.evaluation.infer import spread_indices
  for split in args.splits.split(","):
    rows = load_split(split, *([args.corpus] if args.corpus else []))
    rows = [rows[i] for i in spread_indices(len(rows), args.examples or None)]
    if done.get(split, {}).get("examples") == len(rows):
      print(f"{split}: kept from {args.json} ({len(rows)} examples)", flush=True)
      report["splits"][split] = done[split]
      continue
    rep = translation.evaluate_pair(models, vocab, rows, samples=args.samples, progress=True)
    report["splits"][split] = rep
    print(split, {k: v for k, v in rep.items() if k != "samples"}, flush=True)
    if args.json:
      common.write_json(args.json, report)
  print("\n" + common.header(report["machine"]))
  table = []
  for split, rep in report["splits"].items():
    for n in names:
      table.append({"split": split, "model": n, **report["models"][n], **rep["models"][n],
                    "copy_bleu": rep["copy_bleu"], "examples": rep["examples"]})
  print(common.format_table(table, [
      ("split", "split", ""), ("examples", "examples", ""), ("model", "model", ""),
      ("layers", "layers", ""), ("d_model", "d", ""), ("params_M", "params M", ".2f"),
      ("disk_MiB", "MiB", ".1f"), ("bleu", "BLEU", ".2f"), ("copy_bleu", "copy BLEU", ".2f"),
      ("chrf", "chrF", ".2f"), ("no_eos_rate", "no EOS", ".4f"),
      ("placeholders_kept", "placeholders kept", ".4f")]))
  if len(names) >= 2:
    for split, rep in report["splits"].items():
      print(f"{split}: teacher-forced argmax agreement of {names[0]} with {names[-1]}'s "
            f"greedy output: {rep['agreement']:.3f}")
  if args.json:
    common.write_json(args.json, report)
  return report


if __name__ == "__main__":
  main()
