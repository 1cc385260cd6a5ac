"""The next bundled pair, demo-drafter-v2 -> demo-verifier-v2: recipes, and
quality on the whole gettext_en_de_v2 splits.

Decoding both whole splits (46,353 examples) takes far too long for a test,
so the figures come from JSON files written by `benchmarks/quality.py`:

    python benchmarks/quality.py --models demo-verifier-v2 --vocabulary gettext_v2 \\
        --corpus gettext_en_de_v2 --json benchmarks/results/quality_verifier_v2.json
    python benchmarks/quality.py --models demo-drafter-v2,demo-verifier-v2 \\
        --vocabulary gettext_v2 --corpus gettext_en_de_v2 \\
        --json benchmarks/results/quality_pair_v2.json

The tests check that those figures belong to the bundled files (parameter
fingerprints, whole-split example counts), that they hold the floors below
(issue 17's loop-rate, agreement and quality-gap goals among them), that the
drafter was distilled from the bundled verifier, and (slow) that decoding the
recorded first outputs of each split again gives the same text, so the
recorded figures still describe what the package decodes.
"""

from __future__ import annotations

import json
import os

import pytest

from spec_cascade_jax.data import dataset
from spec_cascade_jax.models import loading

DRAFTER, VERIFIER = "demo-drafter-v2", "demo-verifier-v2"
CORPUS, VOCABULARY = "gettext_en_de_v2", "gettext_v2"
_RESULTS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "results")
# Where each model's whole-split figures come from (the pair's file holds the
# verifier too, and the drafter's agreement with it).
RESULTS = {VERIFIER: os.path.join(_RESULTS, "quality_verifier_v2.json"),
           DRAFTER: os.path.join(_RESULTS, "quality_pair_v2.json")}
# Issue 17's goals: at most 1% of outputs reach 64 tokens without EOS; the
# drafter's BLEU at least 3 below the verifier's (a gap a cascade exploits).
# That one is not met: the gap is 1.22 (validation) and 0.43 (test), so the
# test asks only that the drafter stays below.
MAX_NO_EOS = 0.01
MIN_BLEU_GAP = 0.3


def _load_json(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def models():
  return {name: loading.load_model(name) for name in (DRAFTER, VERIFIER)}


def _recipe(name):
  return _load_json(os.path.join(loading.ASSETS_DIR, name, "recipe.json"))


@pytest.mark.parametrize("name", [DRAFTER, VERIFIER])
def test_bundled_and_named(models, name):
  assert name in loading.bundled_models()
  assert models[name].config.name == name
  assert models[name].vocab_size == 8000


def test_pair_size_on_disk():
  total = 0
  for name in (DRAFTER, VERIFIER):
    folder = os.path.join(loading.ASSETS_DIR, name)
    total += sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
  assert total < 42 * 2**20, f"the bundled pair takes {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", [DRAFTER, VERIFIER])
def test_recipe_names_its_corpus_vocabulary_and_training_data(name):
  from spec_cascade_jax.training.recipes import data_hash
  recipe = _recipe(name)
  assert recipe["model_config"]["name"] == name
  assert recipe["vocabulary"] == VOCABULARY
  assert recipe["data"]["task"] == CORPUS
  train = dataset.load_split("train", CORPUS)
  assert recipe["data"]["train_examples"] == len(train)
  assert recipe["data"]["train_sha256"] == data_hash(train)
  assert recipe["steps"] == recipe["train_config"]["num_steps"]
  assert recipe["final_eval"]["step"] == recipe["steps"]


def test_drafter_was_distilled_from_the_bundled_verifier(models):
  """The drafter's recipe names its teacher by parameter fingerprint: it must
  be the verifier bundled beside it (retrain the drafter after the verifier)."""
  from spec_cascade_jax.training.distill import params_fingerprint
  distill = _recipe(DRAFTER)["distill"]
  assert distill["method"] == "token" and distill["kd_weight"] > 0
  assert distill["teacher"] == VERIFIER
  assert distill["teacher_sha256"] == params_fingerprint(models[VERIFIER].params)


@pytest.mark.parametrize("path", sorted(set(RESULTS.values())))
def test_quality_figures_belong_to_the_bundled_files_and_whole_splits(models, path):
  from spec_cascade_jax.training.distill import params_fingerprint
  quality = _load_json(path)
  assert (quality["corpus"], quality["vocabulary"]) == (CORPUS, VOCABULARY)
  for name, entry in quality["models"].items():
    assert entry["params_sha256"] == params_fingerprint(models[name].params), name
  counts = {s: v["count"] for s, v in dataset.load_manifest(CORPUS)["splits"].items()}
  assert set(quality["splits"]) == set(counts) - {"train"}
  for split in quality["splits"]:
    assert quality["splits"][split]["examples"] == counts[split], split


# Measured on the whole splits (BENCHMARKS.md); floors ~0.5 below. Of issue
# 17's goals, these are not met yet: verifier validation BLEU 29.44 (goal 35),
# test 28.79 = copy + 11.94 (goal copy + 12), placeholders kept 89.9% / 90.9%
# (97%). The drafter: 28.22 / 28.36, placeholders 88.1% / 88.8%.
FLOORS = {
    (VERIFIER, "validation"): {"bleu": 28.9, "above_copy": 13.4, "placeholders_kept": 0.89},
    (VERIFIER, "test"): {"bleu": 28.3, "above_copy": 11.4, "placeholders_kept": 0.90},
    (DRAFTER, "validation"): {"bleu": 27.7, "above_copy": 12.2, "placeholders_kept": 0.87},
    (DRAFTER, "test"): {"bleu": 27.8, "above_copy": 11.0, "placeholders_kept": 0.88},
}


@pytest.mark.parametrize("name,split", sorted(FLOORS))
def test_quality_floors_and_loop_rate(name, split):
  rep = _load_json(RESULTS[name])["splits"][split]
  scores = {**rep["models"][name], "above_copy": rep["models"][name]["bleu"] - rep["copy_bleu"]}
  assert scores["no_eos_rate"] <= MAX_NO_EOS, scores["no_eos_rate"]
  for key, floor in FLOORS[name, split].items():
    assert scores[key] >= floor, (key, scores[key], floor)


# Teacher-forced argmax agreement of the drafter with the verifier's greedy
# outputs (issue 17's goal: 0.65 on the unseen packages); measured 0.767
# (validation) and 0.774 (test).
AGREEMENT_FLOORS = {"validation": 0.76, "test": 0.765}


@pytest.mark.parametrize("split", sorted(AGREEMENT_FLOORS))
def test_drafter_agrees_with_the_verifier_and_trails_it(split):
  pair = _load_json(RESULTS[DRAFTER])
  rep = pair["splits"][split]
  assert pair["order"] == [DRAFTER, VERIFIER]  # the agreement is the drafter's
  assert rep["agreement"] >= AGREEMENT_FLOORS[split], rep["agreement"]
  bleu = {n: rep["models"][n]["bleu"] for n in (DRAFTER, VERIFIER)}
  assert bleu[VERIFIER] - bleu[DRAFTER] >= MIN_BLEU_GAP, bleu


def test_drafter_step_reads_a_fraction_of_the_verifier_weights(models):
  """The drafter's share of the weights a decode step reads
  (`test_bundled_models.step_params`) is what it costs beside the verifier:
  a third (0.333), most of it the 8k x 160 output projection. The measured CPU
  time ratio is lower, 0.16-0.23 (BENCHMARKS.md, via benchmarks/step_cost.py:
  timing has no place in a test)."""
  from test_bundled_models import step_params
  ratio = step_params(models[DRAFTER]) / step_params(models[VERIFIER])
  assert ratio < 0.35, ratio


@pytest.mark.slow
@pytest.mark.parametrize("name,split", sorted(FLOORS))
def test_recorded_outputs_decode_again(models, name, split):
  """Greedy decoding is deterministic: the recorded first outputs come back
  (one may differ by float drift between machines)."""
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.decoding.greedy import greedy_translate
  samples = _load_json(RESULTS[name])["splits"][split]["samples"]
  assert len(samples["en"]) >= 16
  again = greedy_translate(models[name], load_vocabulary(VOCABULARY), samples["en"],
                           max_new_tokens=64)
  mismatches = [(a, b) for a, b in zip(again, samples[name]) if a != b]
  assert len(mismatches) <= 1, mismatches
