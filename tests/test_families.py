"""The model-family registry (models/families.py): one entry per sub-package of
models/, consulted by load_model, our own format and the sharding tables."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spec_cascade_jax.models import families, lm, t5
from spec_cascade_jax.parallel import partitioning
from spec_cascade_jax.testing import BigramModel, tiny_lm_pair, tiny_t5_pair


def test_registry_names_each_family_and_its_parts():
  assert sorted(families.FAMILIES) == ["lm", "t5"]
  t5_family, lm_family = families.get_family("t5"), families.get_family("lm")
  assert t5_family.config_class is t5.T5Config and t5_family.model_class is t5.T5Model
  assert t5_family.parts.load_hf is t5.load_hf_t5
  assert lm_family.config_class is lm.LMConfig and lm_family.model_class is lm.LMModel
  assert lm_family.parts.load_hf is lm.load_hf_lm
  # The HF model types are the ones each family's loader reads.
  assert lm_family.hf_model_types == tuple(lm.SUPPORTED_MODEL_TYPES)
  assert families.HF_MODEL_TYPES == {"t5": "t5", "mt5": "t5", "gemma": "lm", "gemma2": "lm",
                                     "gemma3_text": "lm", "llama": "lm", "qwen2": "lm"}
  assert families.family_for_hf_model_type("qwen2") is lm_family
  assert families.family_for_hf_model_type("mt5") is t5_family
  assert families.family_for_hf_model_type("bert") is None
  assert families.family_for_hf_model_type(None) is None
  with pytest.raises(ValueError, match=r"'rnn'.*valid families: \['lm', 't5'\]"):
    families.get_family("rnn")


def test_family_of_models_and_other_objects():
  d, _ = tiny_t5_pair()
  lm_model, _ = tiny_lm_pair(init_std=0.5)
  assert families.family_of(d) is families.T5
  assert families.family_of(lm_model) is families.LM
  for other in (BigramModel(logits=None), None, 3, d.params):
    assert families.family_of(other) is None


def test_every_family_has_a_sharding_table():
  assert set(partitioning.SHARDED_FAMILIES) == set(families.FAMILIES)


def test_the_registry_imports_no_family():
  code = ("import sys; from spec_cascade_jax.models import families; "
          "assert families.family_of(object()) is None; "
          "print(sorted(m for m in sys.modules if m.startswith(("
          "'spec_cascade_jax.models.t5', 'spec_cascade_jax.models.lm'))))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"
