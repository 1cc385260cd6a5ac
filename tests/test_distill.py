"""Sequence-level distillation: loop filtering, resumable teacher outputs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from spec_cascade_jax.decoding import api
from spec_cascade_jax.models.t5 import PRESETS, T5Model
from spec_cascade_jax.training import distill


def test_tandem_repeat():
  assert distill.tandem_repeat([9, 5, 6, 5, 6, 5, 6, 5, 6, 1])
  assert distill.tandem_repeat([3, 4, 5] * 4)
  assert distill.tandem_repeat([7] * 4)
  assert not distill.tandem_repeat([7] * 3 + [1])            # 3 < min_repeats
  assert not distill.tandem_repeat([5, 6, 5, 6, 5, 6, 7, 5, 6])  # not back to back
  assert not distill.tandem_repeat([1, 2, 3, 4, 5] * 4)      # n = 5 > max_n
  assert not distill.tandem_repeat([])


def test_teacher_examples_fall_back_to_references(monkeypatch):
  examples = [([3, 1], [10, 11, 1]),       # teacher output kept
              ([4, 1], [12, 1]),           # teacher never emits EOS
              ([5, 1], [13, 14, 1]),       # teacher loops, reference does not
              ([6, 1], [7, 7, 7, 7, 1])]   # both loop: the loop is the data
  outs = [[20, 21, 1], [22, 23, 24], [8, 9, 8, 9, 8, 9, 8, 9, 1], [7, 7, 7, 7, 7, 1]]
  monkeypatch.setattr(distill, "teacher_outputs", lambda *a, **k: outs)
  monkeypatch.setattr(distill, "params_fingerprint", lambda p: "f")
  got, info = distill.teacher_examples(T5Model(PRESETS["tiny-v1.1"], {}), examples,
                                       progress=False)
  assert got == [([3, 1], [20, 21, 1]), ([4, 1], [12, 1]), ([5, 1], [13, 14, 1]),
                 ([6, 1], [7, 7, 7, 7, 7, 1])]
  assert (info["teacher_targets"], info["reference_no_eos"],
          info["reference_loop"]) == (2, 1, 1)


@pytest.fixture(scope="module")
def teacher():
  return T5Model.init(PRESETS["tiny-v1.1"], jax.random.PRNGKey(7))


@pytest.mark.slow
def test_teacher_outputs_match_greedy_and_resume(teacher, tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  inputs = [[int(t) for t in rng.integers(3, 60, int(rng.integers(1, 9)))] + [1]
            for _ in range(10)]
  cache = str(tmp_path / "d.json")
  outs = distill.teacher_outputs(teacher, inputs, max_new_tokens=6, batch_size=4,
                                 cache_path=cache, chunk=4, progress=False)
  for x, out in zip(inputs, outs):  # equals greedy decoding of each input alone
    want = [int(t) for t in api.generate(teacher, teacher, np.array([x]),
                                         method="verifier", max_new_tokens=6).tokens[0]]
    want = want[:want.index(1) + 1] if 1 in want else want
    assert out == want
  saved = json.load(open(cache))
  assert saved["teacher"] == distill.params_fingerprint(teacher.params)
  # An interrupted run (some outputs missing) generates only what is missing.
  saved["outputs"][3] = None
  json.dump(saved, open(cache, "w"))
  calls = []
  real = api.generate
  monkeypatch.setattr(api, "generate", lambda d, v, ids, **k: calls.append(len(ids))
                      or real(d, v, ids, **k))
  again = distill.teacher_outputs(teacher, inputs, max_new_tokens=6, batch_size=4,
                                  cache_path=cache, progress=False)
  assert again == outs and calls == [1]
  other = T5Model.init(PRESETS["tiny-v1.1"], jax.random.PRNGKey(8))
  with pytest.raises(ValueError, match="another teacher"):
    distill.teacher_outputs(other, inputs, cache_path=cache, progress=False)
