"""The v2 bundled pairs on gettext_en_de_v2: recipes, and quality on the whole
splits.

- demo-drafter-v2 -> demo-verifier-v2: the drafter distilled at token level
  from that verifier;
- demo-drafter-v2 -> demo-verifier-v3: demo-verifier-v3 is demo-verifier-v2
  trained on (configs/train/demo_verifier_v3.gin), so the drafter's teacher
  is the verifier's starting point.

Decoding both whole splits (46,353 examples) takes far too long for a test,
so the figures come from JSON files written by `benchmarks/quality.py`:

    python benchmarks/quality.py --models demo-verifier-v2 --vocabulary gettext_v2 \\
        --corpus gettext_en_de_v2 --json benchmarks/results/quality_verifier_v2.json
    python benchmarks/quality.py --models demo-drafter-v2,demo-verifier-v2 \\
        --vocabulary gettext_v2 --corpus gettext_en_de_v2 \\
        --json benchmarks/results/quality_pair_v2.json
    python benchmarks/quality.py --models demo-drafter-v2,demo-verifier-v3 \\
        --vocabulary gettext_v2 --corpus gettext_en_de_v2 \\
        --json benchmarks/results/quality_pair_v3.json

The tests check that those figures belong to the bundled files (parameter
fingerprints, whole-split example counts), that they hold the floors below
(issue 17's loop-rate, agreement and quality-gap goals among them), that the
drafter was distilled from the verifier (or its starting point), and (slow)
that decoding the recorded first outputs of each split again gives the same
text, so the recorded figures still describe what the package decodes.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from spec_cascade_jax.data import dataset
from spec_cascade_jax.models import loading

CORPUS, VOCABULARY = "gettext_en_de_v2", "gettext_v2"
DRAFTER = "demo-drafter-v2"
_RESULTS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "results")
# Issue 17's goal: at most 1% of outputs reach 64 tokens without EOS.
MAX_NO_EOS = 0.01


@dataclasses.dataclass(frozen=True)
class Pair:
  verifier: str
  results: str            # quality.py JSON of (drafter, verifier): agreement, both models
  agreement_floors: dict  # split -> teacher-forced argmax agreement floor
  min_bleu_gap: float     # verifier BLEU - drafter BLEU, on every split


# Issue 17's goals: agreement >= 0.65 on the unseen packages; the drafter's
# BLEU at least 3 below the verifier's (a gap a cascade exploits). Against
# demo-verifier-v2 the gap is 1.22 (validation) and 0.43 (test): that pair is
# asked only to keep the drafter below. Measured agreements: 0.767 / 0.774.
# Against demo-verifier-v3 (its teacher trained on): 0.729 / 0.741, and a
# gap of 7.04 / 5.76 BLEU.
PAIRS = {
    "v2": Pair("demo-verifier-v2", "quality_pair_v2.json",
               {"validation": 0.76, "test": 0.765}, 0.3),
    "v3": Pair("demo-verifier-v3", "quality_pair_v3.json",
               {"validation": 0.72, "test": 0.735}, 3.0),
}
VERIFIERS = sorted({p.verifier for p in PAIRS.values()})
# Where each model's whole-split figures come from (a pair's file holds the
# verifier too, and the drafter's agreement with it).
RESULTS = {"demo-verifier-v2": "quality_verifier_v2.json", DRAFTER: "quality_pair_v2.json",
           "demo-verifier-v3": "quality_pair_v3.json"}


def _results_path(name):
  return os.path.join(_RESULTS, name)


def _load_json(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def models():
  return {name: loading.load_model(name) for name in (DRAFTER, *VERIFIERS)}


def _recipe(name):
  return _load_json(os.path.join(loading.ASSETS_DIR, name, "recipe.json"))


@pytest.mark.parametrize("name", [DRAFTER, *VERIFIERS])
def test_bundled_and_named(models, name):
  assert name in loading.bundled_models()
  assert models[name].config.name == name
  assert models[name].vocab_size == 8000


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_pair_size_on_disk(pair):
  total = 0
  for name in (DRAFTER, PAIRS[pair].verifier):
    folder = os.path.join(loading.ASSETS_DIR, name)
    total += sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
  assert total < 42 * 2**20, f"the bundled pair takes {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", [DRAFTER, *VERIFIERS])
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


def test_drafter_was_distilled_from_the_v2_verifier(models):
  """The drafter's recipe names its teacher by parameter fingerprint: the
  bundled demo-verifier-v2 (retrain the drafter after the verifier)."""
  from spec_cascade_jax.training.distill import params_fingerprint
  distill = _recipe(DRAFTER)["distill"]
  assert distill["method"] == "token" and distill["kd_weight"] > 0
  assert distill["teacher"] == "demo-verifier-v2"
  assert distill["teacher_sha256"] == params_fingerprint(models["demo-verifier-v2"].params)


def test_v3_verifier_trained_on_from_the_drafters_teacher(models):
  """demo-verifier-v3 started from the drafter's teacher (its recipe's
  init_sha256) and read the training batches that one had not read."""
  v3, v2 = _recipe("demo-verifier-v3"), _recipe("demo-verifier-v2")
  assert v3["init_from"] == "demo-verifier-v2"
  assert v3["init_sha256"] == _recipe(DRAFTER)["distill"]["teacher_sha256"]
  assert v3["train_config"]["data_offset_steps"] == v2["steps"]
  assert v3["train_config"]["seed"] == v2["train_config"]["seed"]
  assert v3["model_config"] == {**v2["model_config"], "name": "demo-verifier-v3"}


@pytest.mark.parametrize("path", sorted(set(RESULTS.values())))
def test_quality_figures_belong_to_the_bundled_files_and_whole_splits(models, path):
  from spec_cascade_jax.training.distill import params_fingerprint
  quality = _load_json(_results_path(path))
  assert (quality["corpus"], quality["vocabulary"]) == (CORPUS, VOCABULARY)
  for name, entry in quality["models"].items():
    assert entry["params_sha256"] == params_fingerprint(models[name].params), name
  counts = {s: v["count"] for s, v in dataset.load_manifest(CORPUS)["splits"].items()}
  assert set(quality["splits"]) == set(counts) - {"train"}
  for split in quality["splits"]:
    assert quality["splits"][split]["examples"] == counts[split], split


# Measured on the whole splits (BENCHMARKS.md); floors ~0.5 below.
# demo-verifier-v2: 29.44 / 28.79 (= copy + 11.94), placeholders kept
# 89.9% / 90.9%. The drafter: 28.22 / 28.36, placeholders 88.1% / 88.8%.
# demo-verifier-v3: 35.26 / 34.12 (= copy + 17.26), placeholders kept 95.1% /
# 96.7%. Of issue 17's verifier goals only placeholders (97%) is not met.
FLOORS = {
    ("demo-verifier-v2", "validation"): {"bleu": 28.9, "above_copy": 13.4,
                                         "placeholders_kept": 0.89},
    ("demo-verifier-v2", "test"): {"bleu": 28.3, "above_copy": 11.4, "placeholders_kept": 0.90},
    ("demo-verifier-v3", "validation"): {"bleu": 35.0, "above_copy": 19.2,
                                         "placeholders_kept": 0.945},
    ("demo-verifier-v3", "test"): {"bleu": 33.6, "above_copy": 16.7, "placeholders_kept": 0.96},
    (DRAFTER, "validation"): {"bleu": 27.7, "above_copy": 12.2, "placeholders_kept": 0.87},
    (DRAFTER, "test"): {"bleu": 27.8, "above_copy": 11.0, "placeholders_kept": 0.88},
}


@pytest.mark.parametrize("name,split", sorted(FLOORS))
def test_quality_floors_and_loop_rate(name, split):
  rep = _load_json(_results_path(RESULTS[name]))["splits"][split]
  scores = {**rep["models"][name], "above_copy": rep["models"][name]["bleu"] - rep["copy_bleu"]}
  assert scores["no_eos_rate"] <= MAX_NO_EOS, scores["no_eos_rate"]
  for key, floor in FLOORS[name, split].items():
    assert scores[key] >= floor, (key, scores[key], floor)


@pytest.mark.parametrize("pair,split", [(p, s) for p in sorted(PAIRS)
                                        for s in ("test", "validation")])
def test_drafter_agrees_with_the_verifier_and_trails_it(pair, split):
  """Teacher-forced argmax agreement of the drafter with the verifier's greedy
  outputs, and the verifier's BLEU lead, on each whole split."""
  spec = PAIRS[pair]
  quality = _load_json(_results_path(spec.results))
  rep = quality["splits"][split]
  assert quality["order"] == [DRAFTER, spec.verifier]  # the agreement is the drafter's
  assert rep["agreement"] >= spec.agreement_floors[split], rep["agreement"]
  bleu = {n: rep["models"][n]["bleu"] for n in (DRAFTER, spec.verifier)}
  assert bleu[spec.verifier] - bleu[DRAFTER] >= spec.min_bleu_gap, bleu


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_drafter_step_reads_a_fraction_of_the_verifier_weights(models, verifier):
  """The drafter's share of the weights a decode step reads
  (`test_bundled_models.step_params`) is what it costs beside the verifier:
  a third (0.333), most of it the 8k x 160 output projection. The measured CPU
  time ratio is lower, 0.16-0.23 (BENCHMARKS.md, via benchmarks/step_cost.py:
  timing has no place in a test)."""
  from test_bundled_models import step_params
  ratio = step_params(models[DRAFTER]) / step_params(models[verifier])
  assert ratio < 0.35, ratio


@pytest.mark.slow
@pytest.mark.parametrize("name,split", sorted(FLOORS))
def test_recorded_outputs_decode_again(models, name, split):
  """Greedy decoding is deterministic: the recorded first outputs come back
  (one may differ by float drift between machines)."""
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.decoding.greedy import greedy_translate
  samples = _load_json(_results_path(RESULTS[name]))["splits"][split]["samples"]
  assert len(samples["en"]) >= 16
  again = greedy_translate(models[name], load_vocabulary(VOCABULARY), samples["en"],
                           max_new_tokens=64)
  mismatches = [(a, b) for a, b in zip(again, samples[name]) if a != b]
  assert len(mismatches) <= 1, mismatches
