"""The bundled next verifier, demo-verifier-v2: its recipe, and its quality on
the whole gettext_en_de_v2 splits.

Decoding both whole splits (46,353 examples) takes far too long for a test,
so the figures come from `benchmarks/results/quality_verifier_v2.json`,
written by

    python benchmarks/quality.py --models demo-verifier-v2 --vocabulary gettext_v2 \\
        --corpus gettext_en_de_v2 --json benchmarks/results/quality_verifier_v2.json

The tests check that those figures belong to the bundled file (its parameter
fingerprint, whole-split example counts), that they hold the floors below
(issue 17's loop-rate goal among them), and
(slow) that decoding the recorded first outputs of each split again gives the
same text, so the recorded figures still describe what the package decodes.
"""

from __future__ import annotations

import json
import os

import pytest

from spec_cascade_jax.data import dataset
from spec_cascade_jax.models import loading

NAME = "demo-verifier-v2"
CORPUS, VOCABULARY = "gettext_en_de_v2", "gettext_v2"
RESULTS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "results",
                       "quality_verifier_v2.json")
# Issue 17's goal: at most 1% of outputs reach 64 tokens without EOS.
MAX_NO_EOS = 0.01


@pytest.fixture(scope="module")
def model():
  return loading.load_model(NAME)


@pytest.fixture(scope="module")
def recipe():
  with open(os.path.join(loading.ASSETS_DIR, NAME, "recipe.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def quality():
  with open(RESULTS) as f:
    return json.load(f)


def test_bundled_and_named(model):
  assert NAME in loading.bundled_models()
  assert model.config.name == NAME
  assert model.vocab_size == 8000


def test_recipe_names_its_corpus_vocabulary_and_training_data(recipe):
  from spec_cascade_jax.training.recipes import data_hash
  assert recipe["model_config"]["name"] == NAME
  assert recipe["vocabulary"] == VOCABULARY
  assert recipe["data"]["task"] == CORPUS
  train = dataset.load_split("train", CORPUS)
  assert recipe["data"]["train_examples"] == len(train)
  assert recipe["data"]["train_sha256"] == data_hash(train)
  assert recipe["steps"] == recipe["train_config"]["num_steps"]
  assert recipe["final_eval"]["step"] == recipe["steps"]


def test_quality_figures_belong_to_the_bundled_file_and_whole_splits(model, quality):
  from spec_cascade_jax.training.distill import params_fingerprint
  assert quality["models"][NAME]["params_sha256"] == params_fingerprint(model.params)
  assert (quality["corpus"], quality["vocabulary"]) == (CORPUS, VOCABULARY)
  counts = {s: v["count"] for s, v in dataset.load_manifest(CORPUS)["splits"].items()}
  for split in quality["splits"]:
    assert quality["splits"][split]["examples"] == counts[split], split


# Measured on the whole splits (BENCHMARKS.md); floors ~0.5 below. Of issue
# 17's goals, these are not met yet: validation BLEU 29.44 (goal 35), test
# 28.79 = copy + 11.94 (goal copy + 12), placeholders kept 89.9% / 90.9% (97%).
FLOORS = {"validation": {"bleu": 28.9, "above_copy": 13.4, "placeholders_kept": 0.89},
          "test": {"bleu": 28.3, "above_copy": 11.4, "placeholders_kept": 0.90}}


@pytest.mark.parametrize("split", sorted(FLOORS))
def test_quality_floors_and_loop_rate(quality, split):
  rep = quality["splits"][split]
  scores = {**rep["models"][NAME], "above_copy": rep["models"][NAME]["bleu"] - rep["copy_bleu"]}
  assert scores["no_eos_rate"] <= MAX_NO_EOS, scores["no_eos_rate"]
  for key, floor in FLOORS[split].items():
    assert scores[key] >= floor, (key, scores[key], floor)


@pytest.mark.slow
@pytest.mark.parametrize("split", sorted(FLOORS))
def test_recorded_outputs_decode_again(model, quality, split):
  """Greedy decoding is deterministic: the recorded first outputs come back
  (one may differ by float drift between machines)."""
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.decoding.greedy import greedy_translate
  samples = quality["splits"][split]["samples"]
  assert len(samples["en"]) >= 16
  again = greedy_translate(model, load_vocabulary(VOCABULARY), samples["en"],
                           max_new_tokens=64)
  mismatches = [(a, b) for a, b in zip(again, samples[NAME]) if a != b]
  assert len(mismatches) <= 1, mismatches
