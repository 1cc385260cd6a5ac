"""The v2, v3 and v4 bundled pairs on gettext_en_de_v2: recipes, and quality
on the whole splits.

- demo-drafter-v2 -> demo-verifier-v2: the drafter distilled at token level
  from that verifier;
- demo-drafter-v3 -> demo-verifier-v3: demo-verifier-v3 is demo-verifier-v2
  trained on (configs/train/demo_verifier_v3.gin), and demo-drafter-v3 is
  demo-drafter-v2 distilled on from demo-verifier-v3
  (configs/train/demo_drafter_v3.gin);
- demo-drafter-v4 -> demo-verifier-v4, the main job's pair: the v3 models
  trained on the same way, the verifier with placeholder positions weighted
  (configs/train/demo_verifier_v4.gin, demo_drafter_v4.gin).

Decoding both whole splits (46,353 examples) takes far too long for a test,
so the figures come from JSON files written by `benchmarks/quality.py`:

    python benchmarks/quality.py --models demo-verifier-v2 --vocabulary gettext_v2 \\
        --corpus gettext_en_de_v2 --json benchmarks/results/quality_verifier_v2.json
    python benchmarks/quality.py --models demo-drafter-v2,demo-verifier-v2 \\
        --vocabulary gettext_v2 --corpus gettext_en_de_v2 \\
        --json benchmarks/results/quality_pair_v2.json
    python benchmarks/quality.py --models demo-drafter-v3,demo-verifier-v3 \\
        --vocabulary gettext_v2 --corpus gettext_en_de_v2 \\
        --json benchmarks/results/quality_pair_v3.json
    python benchmarks/quality.py --models demo-drafter-v4,demo-verifier-v4 \\
        --vocabulary gettext_v2 --corpus gettext_en_de_v2 \\
        --json benchmarks/results/quality_pair_v4.json

(and `quality_v3_with_drafter_v2.json`, demo-verifier-v3 with the v2 drafter,
BENCHMARKS.md's record of it before demo-drafter-v3). The tests check that
those figures belong to the bundled files (parameter fingerprints, whole-split
example counts), that they hold the floors below (issue 17's loop-rate,
agreement and quality-gap goals among them), that each drafter was distilled
from its verifier and each v3 (v4) model started from its v2 (v3) one, and (slow, for
the main job's pair) that decoding the recorded first outputs of each split
again gives the same text, so the recorded figures still describe what the
package decodes.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from spec_cascade_jax.data import dataset
from spec_cascade_jax.models import loading

CORPUS, VOCABULARY = "gettext_en_de_v2", "gettext_v2"
_RESULTS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "results")
# Issue 17's goal: at most 1% of outputs reach 64 tokens without EOS.
MAX_NO_EOS = 0.01


@dataclasses.dataclass(frozen=True)
class Pair:
  drafter: str
  verifier: str
  results: str            # quality.py JSON of (drafter, verifier): agreement, both models
  agreement_floors: dict  # split -> teacher-forced argmax agreement floor
  min_bleu_gaps: dict     # split -> floor of verifier BLEU - drafter BLEU


# Issue 17's goals: agreement >= 0.65 on the unseen packages; the drafter's
# BLEU at least 3 below the verifier's (a gap a cascade exploits). Against
# demo-verifier-v2 the v2 drafter's gap is 1.22 (validation) and 0.43 (test):
# that pair is asked only to keep the drafter below. The v3 pair's gap is
# 4.22 on validation and 2.96 on the unseen packages (the goal's 3 missed by
# 0.04 there; BENCHMARKS.md). The v4 pair meets it: 4.88 and 3.28. Measured
# agreements: v2 0.767 / 0.774 (validation / test); v3 0.778 / 0.787; v4
# 0.776 / 0.785.
PAIRS = {
    "v2": Pair("demo-drafter-v2", "demo-verifier-v2", "quality_pair_v2.json",
               {"validation": 0.76, "test": 0.765}, {"validation": 0.3, "test": 0.3}),
    "v3": Pair("demo-drafter-v3", "demo-verifier-v3", "quality_pair_v3.json",
               {"validation": 0.77, "test": 0.78}, {"validation": 3.0, "test": 2.9}),
    "v4": Pair("demo-drafter-v4", "demo-verifier-v4", "quality_pair_v4.json",
               {"validation": 0.77, "test": 0.78},
               {"validation": 3.0, "test": 3.0}),
}
MAIN = PAIRS["v4"]  # the main job's pair (configs/demo.gin)
NAMES = sorted({n for p in PAIRS.values() for n in (p.drafter, p.verifier)})
# Where each model's whole-split figures come from (a pair's file holds the
# verifier too, and the drafter's agreement with it).
RESULTS = {"demo-verifier-v2": "quality_verifier_v2.json",
           "demo-drafter-v2": "quality_pair_v2.json",
           "demo-verifier-v3": "quality_pair_v3.json",
           "demo-drafter-v3": "quality_pair_v3.json",
           "demo-verifier-v4": "quality_pair_v4.json",
           "demo-drafter-v4": "quality_pair_v4.json"}
RESULT_FILES = sorted({*RESULTS.values(), "quality_v3_with_drafter_v2.json"})


def _results_path(name):
  return os.path.join(_RESULTS, name)


def _load_json(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def models():
  return {name: loading.load_model(name) for name in NAMES}


def _recipe(name):
  return _load_json(os.path.join(loading.ASSETS_DIR, name, "recipe.json"))


def _fingerprint(model):
  from spec_cascade_jax.training.distill import params_fingerprint
  return params_fingerprint(model.params)


@pytest.mark.parametrize("name", NAMES)
def test_bundled_and_named(models, name):
  assert name in loading.bundled_models()
  assert models[name].config.name == name
  assert models[name].vocab_size == 8000


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_pair_size_on_disk(pair):
  total = 0
  for name in (PAIRS[pair].drafter, PAIRS[pair].verifier):
    folder = os.path.join(loading.ASSETS_DIR, name)
    total += sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
  assert total < 42 * 2**20, f"the bundled pair takes {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", NAMES)
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


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_drafter_was_distilled_from_its_verifier(models, pair):
  """Each drafter's recipe names its teacher by parameter fingerprint: the
  verifier bundled beside it (retrain the drafter after the verifier)."""
  spec = PAIRS[pair]
  distill = _recipe(spec.drafter)["distill"]
  assert distill["method"] == "token" and distill["kd_weight"] > 0
  assert distill["teacher"] == spec.verifier
  assert distill["teacher_sha256"] == _fingerprint(models[spec.verifier])


# Each pair's models are the previous pair's trained on.
LINEAGE = [("v2", "v3"), ("v3", "v4")]


@pytest.mark.parametrize("older,newer", LINEAGE)
@pytest.mark.parametrize("role", ["drafter", "verifier"])
def test_model_trained_on_from_the_previous_pairs(models, role, older, newer):
  """Each v3 (v4) model started from the bundled v2 (v3) one (its recipe's
  init_sha256), read the training batches that one and its own starting
  points had not read (same seed, data offset = their steps) and kept its
  shape."""
  old_name, new_name = getattr(PAIRS[older], role), getattr(PAIRS[newer], role)
  new, old = _recipe(new_name), _recipe(old_name)
  assert new["init_from"] == old_name
  assert new["init_sha256"] == _fingerprint(models[old_name])
  assert new["train_config"]["data_offset_steps"] == (
      old["train_config"].get("data_offset_steps", 0) + old["steps"])  # v2: no offset yet
  assert new["train_config"]["seed"] == old["train_config"]["seed"]
  assert new["model_config"] == {**old["model_config"], "name": new_name}


@pytest.mark.parametrize("path", RESULT_FILES)
def test_quality_figures_belong_to_the_bundled_files_and_whole_splits(models, path):
  quality = _load_json(_results_path(path))
  assert (quality["corpus"], quality["vocabulary"]) == (CORPUS, VOCABULARY)
  for name, entry in quality["models"].items():
    assert entry["params_sha256"] == _fingerprint(models[name]), name
  counts = {s: v["count"] for s, v in dataset.load_manifest(CORPUS)["splits"].items()}
  assert set(quality["splits"]) == set(counts) - {"train"}
  for split in quality["splits"]:
    assert quality["splits"][split]["examples"] == counts[split], split


# Measured on the whole splits (BENCHMARKS.md); floors ~0.5 below.
# demo-verifier-v2: 29.44 / 28.79 (= copy + 11.94), placeholders kept
# 89.9% / 90.9%. demo-drafter-v2: 28.22 / 28.36, placeholders 88.1% / 88.8%.
# demo-verifier-v3: 35.26 / 34.12 (= copy + 17.26), placeholders kept 95.1% /
# 96.7%. Of issue 17's verifier goals only placeholders (97%) is not met.
# demo-drafter-v3: 31.04 / 31.17 (= copy + 14.31), placeholders kept 91.3% /
# 92.4%. demo-verifier-v4: 36.48 / 34.98 (= copy + 18.12), placeholders kept
# 95.7% / 97.1%: every verifier goal of issue 17 met on the unseen packages
# (its floor there is the goal, 97%). demo-drafter-v4: 31.60 / 31.70
# (= copy + 14.84), placeholders kept 91.5% / 92.6%.
FLOORS = {
    ("demo-verifier-v2", "validation"): {"bleu": 28.9, "above_copy": 13.4,
                                         "placeholders_kept": 0.89},
    ("demo-verifier-v2", "test"): {"bleu": 28.3, "above_copy": 11.4, "placeholders_kept": 0.90},
    ("demo-verifier-v3", "validation"): {"bleu": 35.0, "above_copy": 19.2,
                                         "placeholders_kept": 0.945},
    ("demo-verifier-v3", "test"): {"bleu": 33.6, "above_copy": 16.7, "placeholders_kept": 0.96},
    ("demo-drafter-v2", "validation"): {"bleu": 27.7, "above_copy": 12.2,
                                        "placeholders_kept": 0.87},
    ("demo-drafter-v2", "test"): {"bleu": 27.8, "above_copy": 11.0, "placeholders_kept": 0.88},
    ("demo-drafter-v3", "validation"): {"bleu": 30.5, "above_copy": 15.0,
                                        "placeholders_kept": 0.905},
    ("demo-drafter-v3", "test"): {"bleu": 30.6, "above_copy": 13.8, "placeholders_kept": 0.915},
    ("demo-verifier-v4", "validation"): {"bleu": 36.0, "above_copy": 20.5,
                                         "placeholders_kept": 0.952},
    ("demo-verifier-v4", "test"): {"bleu": 34.5, "above_copy": 17.6, "placeholders_kept": 0.97},
    ("demo-drafter-v4", "validation"): {"bleu": 31.1, "above_copy": 15.6,
                                        "placeholders_kept": 0.91},
    ("demo-drafter-v4", "test"): {"bleu": 31.2, "above_copy": 14.3, "placeholders_kept": 0.92},
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
  assert quality["order"] == [spec.drafter, spec.verifier]  # the agreement is the drafter's
  assert rep["agreement"] >= spec.agreement_floors[split], rep["agreement"]
  bleu = {n: rep["models"][n]["bleu"] for n in (spec.drafter, spec.verifier)}
  assert bleu[spec.verifier] - bleu[spec.drafter] >= spec.min_bleu_gaps[split], bleu


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_drafter_step_reads_a_fraction_of_the_verifier_weights(models, pair):
  """The drafter's share of the weights a decode step reads
  (`test_bundled_models.step_params`) is what it costs beside the verifier:
  a third (0.333), most of it the 8k x 160 output projection. The measured CPU
  time ratio is lower, 0.16-0.23 (BENCHMARKS.md, via benchmarks/step_cost.py:
  timing has no place in a test)."""
  from test_bundled_models import step_params
  spec = PAIRS[pair]
  ratio = step_params(models[spec.drafter]) / step_params(models[spec.verifier])
  assert ratio < 0.35, ratio


@pytest.mark.slow
@pytest.mark.parametrize("name,split", [(n, s) for n in (MAIN.drafter, MAIN.verifier)
                                        for s in ("test", "validation")])
def test_recorded_outputs_decode_again(models, name, split):
  """Greedy decoding is deterministic: the main job's pair gives back its
  recorded first outputs (one may differ by float drift between machines)."""
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.decoding.greedy import greedy_translate
  samples = _load_json(_results_path(RESULTS[name]))["splits"][split]["samples"]
  assert len(samples["en"]) >= 16
  again = greedy_translate(models[name], load_vocabulary(VOCABULARY), samples["en"],
                           max_new_tokens=64)
  mismatches = [(a, b) for a, b in zip(again, samples[name]) if a != b]
  assert len(mismatches) <= 1, mismatches
