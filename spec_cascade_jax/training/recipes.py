"""Recipes: train the bundled demo drafter/verifier on the gettext corpus.

    python -m spec_cascade_jax.main --gin_file=configs/train/demo_verifier.gin

A recipe ties the data (shipped splits), the demo vocabulary, the trainer and
the export together, and writes `recipe.json` (config, seed, data hash, steps,
wall time, machine) next to the weights so the model can be reproduced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from typing import Sequence

import numpy as np

from spec_cascade_jax.data.vocab import encode_with_eos, placeholder_piece_mask
from spec_cascade_jax.decoding.greedy import greedy_ids
from spec_cascade_jax.models.t5 import T5Config
from spec_cascade_jax.training.trainer import TrainConfig, train


def encode_pairs(pairs: Sequence[dict], vocab, max_len: int) -> list[tuple[list[int], list[int]]]:
  """English -> German pairs as (input_ids, target_ids), EOS appended, truncated."""
  out = []
  for ex in pairs:
    out.append((encode_with_eos(vocab, ex["en"], max_len),
                encode_with_eos(vocab, ex["de"], max_len)))
  return out


def greedy_translate(model, vocab, sources: Sequence[str], batch_size: int = 64,
                     max_new_tokens: int = 64, max_len: int = 128) -> list[str]:
  """Greedy verifier-only translations of `sources` by `model`, batched
  (`decoding.greedy.greedy_ids` on the texts encoded with `vocab`)."""
  ids = [encode_with_eos(vocab, x, max_len) for x in sources]
  return [vocab.decode(o) for o in greedy_ids(model, ids, batch_size, max_new_tokens)]


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
  """The project's one BLEU (`evaluation.metrics.bleu`: sacrebleu, T5's settings)."""
  from spec_cascade_jax.evaluation import metrics
  return metrics.bleu(list(references), list(predictions))["bleu"]


def data_hash(pairs: Sequence[dict]) -> str:
  h = hashlib.sha256()
  for ex in pairs:
    h.update(ex["en"].encode() + b"\x00" + ex["de"].encode() + b"\x01")
  return h.hexdigest()


def _initial_params(init_from: str, model_config: T5Config, workdir: str,
                    expected_sha256: str | None = None):
  """Parameters of `init_from` grown to `model_config`, its recipe (or None), and
  the fingerprint of its parameters as loaded (`distill.params_fingerprint`),
  checked against `expected_sha256` when given. `init_from` may name a model
  of the git history (training/lineage.py), written out under `workdir`."""
  from spec_cascade_jax.models.loading import ASSETS_DIR, load_model
  from spec_cascade_jax.training import lineage
  from spec_cascade_jax.training.distill import params_fingerprint
  from spec_cascade_jax.training.growth import check_growable, deepen

  init_from = lineage.materialize(init_from, os.path.join(workdir, "start"))
  init = load_model(init_from)
  fingerprint = params_fingerprint(init.params)
  lineage.check_fingerprint(init_from, fingerprint, expected_sha256)
  check_growable(init.config, model_config)
  grown = deepen(init, model_config.num_layers, model_config.n_decoder_layers)
  folder = init_from if os.path.isdir(init_from) else os.path.join(ASSETS_DIR, init_from)
  recipe = None
  path = os.path.join(folder, "recipe.json")
  if os.path.isfile(path):
    with open(path) as f:
      recipe = json.load(f)
  return grown.params, recipe, fingerprint


def train_gettext(model_config: T5Config, train_config: TrainConfig, workdir: str,
                  output_dir: str, vocabulary: str = "gettext",
                  bleu_examples: int = 200, init_from: str | None = None,
                  init_sha256: str | None = None,
                  param_dtype: str = "float32", distill_from: str | None = None,
                  corpus: str = "gettext_en_de", kd_from: str | None = None) -> dict:
  """Trains `model_config` on a gettext corpus and exports it to `output_dir`.

  Args:
    init_from: optional model (path or bundled name) to start from instead of
      a random init; if it has fewer layers than `model_config` it is grown
      with `growth.deepen` (same function, new layers start as identities).
      Its recipe.json is kept in this recipe under "init_recipe", the
      fingerprint of its parameters under "init_sha256", and both with the
      commit and path of a model of the git history ('git:<commit>:<path>',
      training/lineage.py) under "start".
    init_sha256: the fingerprint `init_from` must have; a different model
      raises before training.
    param_dtype: storage dtype of the exported weights ("float32" or
      "bfloat16"); for bfloat16, "final_eval_stored" records BLEU with the
      stored (rounded) weights.
    kd_from: optional teacher (path or bundled name) for token-level
      distillation: `train_config.kd_weight` of the loss is the cross-entropy
      with its distribution at every reference prefix (trainer.loss_fn). The
      recipe records its parameter fingerprint under "distill".
    corpus: bundled corpus name (data.dataset.CORPORA) or a build_gettext
      output directory.
    distill_from: optional teacher (path or bundled name, normally the
      verifier this model will draft for): train on its greedy outputs for the
      training inputs instead of the references (training/distill.py; loops
      fall back to the reference). Validation still scores the references.
  """
  from spec_cascade_jax.data.dataset import load_split
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.models.checkpoint import round_params, save_model

  vocab = load_vocabulary(vocabulary)
  if vocab.vocab_size != model_config.vocab_size:
    raise ValueError(
        f"model_config.vocab_size={model_config.vocab_size} but vocabulary "
        f"{vocabulary!r} has {vocab.vocab_size} pieces; set vocab_size to match.")
  train_pairs, valid_pairs = load_split("train", corpus), load_split("validation", corpus)
  train_ex = encode_pairs(train_pairs, vocab, train_config.max_len)
  valid_ex = encode_pairs(valid_pairs, vocab, train_config.max_len)
  bleu_subset = valid_pairs[:bleu_examples]

  def bleu_fn(model):
    preds = greedy_translate(model, vocab, [e["en"] for e in bleu_subset],
                             max_new_tokens=train_config.eval_max_new_tokens)
    return corpus_bleu(preds, [e["de"] for e in bleu_subset])

  distill_info = None
  if distill_from is not None:
    from spec_cascade_jax.models.loading import load_model
    from spec_cascade_jax.training.distill import teacher_examples
    train_ex, distill_info = teacher_examples(
        load_model(distill_from), train_ex,
        max_new_tokens=train_config.max_len,
        cache_path=os.path.join(workdir, "distill_targets.json"))
    distill_info["teacher"] = distill_from
  teacher = None
  if kd_from is not None:
    from spec_cascade_jax.models.loading import load_model
    from spec_cascade_jax.training.distill import params_fingerprint
    teacher = load_model(kd_from)
    distill_info = {"method": "token", "teacher": kd_from,
                    "teacher_sha256": params_fingerprint(teacher.params),
                    "kd_weight": train_config.kd_weight}
  init_params, init_recipe, init_sha256 = None, None, None
  if init_from is not None:
    init_params, init_recipe, init_sha256 = _initial_params(init_from, model_config,
                                                            workdir, init_sha256)
  t0 = time.time()
  model, history = train(model_config, train_ex, valid_ex, train_config, workdir,
                         bleu_fn=bleu_fn, init_params=init_params, teacher=teacher,
                         placeholder_mask=(placeholder_piece_mask(vocab)
                                           if train_config.placeholder_weight != 1.0 else None))
  save_model(model, output_dir, param_dtype=param_dtype, vocabulary=vocab)
  recipe = {
      "model_config": model_config.to_dict(),
      "train_config": dataclasses.asdict(train_config),
      "vocabulary": {"name": vocab.name, "sha256": vocab.fingerprint},
      "data": {"task": os.path.basename(os.path.normpath(corpus)),
               "train_sha256": data_hash(train_pairs),
               "train_examples": len(train_pairs)},
      "steps": train_config.num_steps,
      "wall_time_s": history.get("wall_time_s", time.time() - t0),
      "machine": {"platform": platform.platform(), "processor": platform.machine(),
                  "cpu_count": os.cpu_count(),
                  "jax_backend": __import__("jax").default_backend()},
      "final_eval": history["eval"][-1] if history["eval"] else None,
      "param_dtype": param_dtype,
      "history": history,
  }
  if param_dtype != "float32":  # float32 stores the trained weights as they are
    recipe["final_eval_stored"] = {"valid_bleu": bleu_fn(round_params(model, param_dtype)),
                                   "examples": len(bleu_subset)}
  if distill_info is not None:
    recipe["distill"] = distill_info
  if init_from is not None:
    recipe["init_from"] = init_from
    recipe["init_sha256"] = init_sha256
    recipe["init_recipe"] = init_recipe
    from spec_cascade_jax.training import lineage
    recipe["start"] = lineage.start_record(init_from, init_sha256)
  with open(os.path.join(output_dir, "recipe.json"), "w") as f:
    json.dump(recipe, f, indent=1)
  return recipe
