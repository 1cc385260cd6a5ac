"""The bundled demo pair: loads by name, recipe recorded, BLEU floors on validation.

Floors are the BLEU each model reached on the validation split when it was
trained (BENCHMARKS.md, `benchmarks/quality.py`), minus a margin for numerical
drift across machines; greedy decoding is deterministic, so a regression of
the model files, the loader, the T5 code or the kernel shows up as a drop.
The whole split (1,444 examples, about a minute for both models) is used:
BLEU on 100 examples swings by ±4 between subsets of this data, too much to
check a 3-BLEU gap on.
"""

from __future__ import annotations

import json
import os

import pytest

from spec_cascade_jax.models import loading

NAMES = ("demo-drafter", "demo-verifier")
# Measured 2026-11-26 on the whole validation split (greedy, 64 new tokens):
# drafter 9.75, verifier 15.41 (BENCHMARKS.md); floors ~0.6 below.
BLEU_FLOORS = {"demo-drafter": 9.2, "demo-verifier": 14.8}


@pytest.fixture(scope="module")
def pair():
  return {name: loading.load_model(name) for name in NAMES}


@pytest.fixture(scope="module")
def translations(pair):
  from spec_cascade_jax.data.dataset import load_split
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.decoding.greedy import greedy_translate
  from spec_cascade_jax.training.recipes import corpus_bleu
  vocab = load_vocabulary("demo")
  data = load_split("validation")
  out = {}
  for name, model in pair.items():
    preds = greedy_translate(model, vocab, [e["en"] for e in data], max_new_tokens=64)
    out[name] = (preds, corpus_bleu(preds, [e["de"] for e in data]))
  return out


def test_bundled_names_listed():
  assert set(NAMES) <= set(loading.bundled_models())


def test_pair_shares_vocabulary_and_sizes(pair):
  d, v = pair["demo-drafter"], pair["demo-verifier"]
  assert d.vocab_size == v.vocab_size == 8000
  from spec_cascade_jax.models.params import count_params
  n = lambda m: count_params(m.params)  # noqa: E731
  assert n(d) * 3 < n(v)
  total = 0
  for name in NAMES:
    folder = os.path.join(loading.ASSETS_DIR, name)
    total += sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
  assert total < 42 * 2**20, f"bundled models take {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", NAMES)
def test_recipe_recorded(name):
  with open(os.path.join(loading.ASSETS_DIR, name, "recipe.json")) as f:
    recipe = json.load(f)
  for key in ("model_config", "train_config", "data", "steps", "wall_time_s", "machine"):
    assert key in recipe, key
  assert recipe["model_config"]["name"] == name
  assert len(recipe["data"]["train_sha256"]) == 64


def test_drafter_was_distilled_from_the_bundled_verifier(pair):
  """The drafter's recipe names its teacher by parameter fingerprint: it must
  be the verifier shipped beside it (retrain the drafter after the verifier)."""
  from spec_cascade_jax.training.distill import params_fingerprint
  with open(os.path.join(loading.ASSETS_DIR, "demo-drafter", "recipe.json")) as f:
    distill = json.load(f)["distill"]
  assert distill["teacher"] == "demo-verifier"
  assert distill["teacher_sha256"] == params_fingerprint(pair["demo-verifier"].params)
  assert distill["teacher_targets"] > 0.5 * distill["examples"]


@pytest.mark.slow
def test_bleu_floors(translations):
  bleu = {name: b for name, (_, b) in translations.items()}
  for name, floor in BLEU_FLOORS.items():
    assert bleu[name] >= floor, (name, bleu[name], floor)


@pytest.mark.slow
def test_verifier_beats_drafter_by_3_bleu(translations):
  bleu = {name: b for name, (_, b) in translations.items()}
  assert bleu["demo-verifier"] >= bleu["demo-drafter"] + 3.0, bleu


def step_params(model) -> int:
  """The weights a T5 decode step reads per generated token: its decoder
  layers and the tied output projection (the encoder runs once per input)."""
  from spec_cascade_jax.models.params import count_params
  return count_params(model.params["decoder"]) + model.config.vocab_size * model.config.d_model


def test_drafter_step_is_cheap_in_flops(pair):
  """The drafter's decode step does far less work than the verifier's.

  (The measured CPU time ratio, ≤ 0.2, is in BENCHMARKS.md via
  benchmarks/step_cost.py; timing has no place in a test.)
  """
  d, v = pair["demo-drafter"], pair["demo-verifier"]
  assert step_params(d) * 5 < step_params(v)
