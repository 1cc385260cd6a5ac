"""Seconds per training step of a T5 config, float32 against bfloat16 activations.

The step is the trainer's own (`trainer.make_train_step`: loss, gradients,
optimizer update) on real packed batches of a bundled corpus, as the recipes
build them. Each compute dtype is compiled first (not timed); then rounds
alternate the dtypes (ABBA), each timing `--steps` consecutive steps, so
drift falls on both alike. The table gives each dtype's median seconds per
step and the ratio bfloat16 / float32 within each round (median and range).
Parameters and the optimizer state stay float32 either way; bfloat16 changes
the activations only (layer norms, softmax and logits stay float32 in the
model).

    python benchmarks/train_step.py --json benchmarks/results/train_step.json
    python benchmarks/train_step.py --d-model 64 --d-ff 128 --heads 2 --rounds 2 --steps 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from spec_cascade_jax.data import dataset  # noqa: E402
from spec_cascade_jax.data.vocab import load_vocabulary  # noqa: E402
from spec_cascade_jax.models.t5 import T5Config, T5Model  # noqa: E402
from spec_cascade_jax.training import batching, recipes, trainer  # noqa: E402


def batches(corpus: str, vocabulary: str, rows: int, max_len: int, count: int, seed: int):
  """`count` packed batches [rows, max_len] from the first training pairs."""
  pairs = dataset.load_split("train", corpus)[:rows * max_len // 4 * (count + 1)]
  examples = recipes.encode_pairs(pairs, load_vocabulary(vocabulary), max_len)
  stream = batching.PackedBatcher(examples, rows * max_len, max_len, seed=seed).batches(0)
  return [next(stream) for _ in range(count)]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--corpus", default="gettext_en_de")
  ap.add_argument("--vocabulary", default=None, help="default: the corpus's own")
  ap.add_argument("--d-model", type=int, default=384)
  ap.add_argument("--d-ff", type=int, default=1536)
  ap.add_argument("--heads", type=int, default=6)
  ap.add_argument("--layers", default="3+3", help="encoder+decoder layers")
  ap.add_argument("--rows", type=int, default=50, help="packed rows per batch")
  ap.add_argument("--max-len", type=int, default=64)
  ap.add_argument("--optimizer", default="adafactor", choices=trainer.OPTIMIZERS)
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--steps", type=int, default=5, help="timed steps per round and dtype")
  ap.add_argument("--json", help="also write the results here")
  args = ap.parse_args(argv)
  enc, dec = (int(x) for x in args.layers.split("+"))
  vocabulary = args.vocabulary or dataset.CORPUS_VOCABULARIES[args.corpus]
  vocab_size = load_vocabulary(vocabulary).vocab_size
  data = batches(args.corpus, vocabulary, args.rows, args.max_len, args.steps, seed=0)
  opt = trainer.make_optimizer(trainer.TrainConfig(optimizer=args.optimizer))
  dtypes = ("float32", "bfloat16")
  steps, states = {}, {}
  for dt in dtypes:
    cfg = T5Config(name="bench", vocab_size=vocab_size, d_model=args.d_model, d_kv=64,
                   d_ff=args.d_ff, num_heads=args.heads, num_layers=enc,
                   num_decoder_layers=dec, feed_forward_proj="relu",
                   tie_word_embeddings=True, dtype=dt)
    params = T5Model.init(cfg, jax.random.PRNGKey(0)).params
    steps[dt] = trainer.make_train_step(cfg, opt, label_smoothing=0.1)
    states[dt] = trainer.TrainState(step=np.int32(0), params=params,
                                    opt_state=opt.init(params))

  def run(dt):
    state = states[dt]
    for b in data:
      state, loss = steps[dt](state, b.inputs, b.decoder_inputs, b.targets,
                              b.model_kwargs or None)
    jax.block_until_ready(loss)
    states[dt] = state

  for dt in dtypes:  # compile (and one warm pass), not timed
    run(dt)
  per_step = {dt: [] for dt in dtypes}
  for r in range(args.rounds):
    for dt in (dtypes if r % 2 == 0 else dtypes[::-1]):
      t0 = time.perf_counter()
      run(dt)
      per_step[dt].append((time.perf_counter() - t0) / len(data))
  ratios = np.array(per_step["bfloat16"]) / np.array(per_step["float32"])
  info = common.machine()
  rows = [{"dtype": dt, "s_per_step": float(np.median(per_step[dt])),
           "s_min": float(np.min(per_step[dt])), "s_max": float(np.max(per_step[dt]))}
          for dt in dtypes]
  print(f"{common.header(info)}  {args.corpus}  d_model {args.d_model}  layers {args.layers}"
        f"  {args.rows}x{args.max_len} packed  {args.optimizer}  rounds {args.rounds} x "
        f"{len(data)} steps")
  print(common.format_table(rows, [("dtype", "activations", ""),
                                   ("s_per_step", "s/step (med)", ".3f"),
                                   ("s_min", "min", ".3f"), ("s_max", "max", ".3f")]))
  print(f"bfloat16 / float32 per round: median {np.median(ratios):.3f} "
        f"(range {ratios.min():.3f}-{ratios.max():.3f})")
  report = {"machine": info, "args": vars(args), "rows": rows,
            "ratio_median": float(np.median(ratios)), "ratio_min": float(ratios.min()),
            "ratio_max": float(ratios.max()), "per_step": per_step}
  if args.json:
    common.write_json(args.json, report)
  return report


if __name__ == "__main__":
  main()
