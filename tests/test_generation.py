"""scj.generate, the front door (spec_cascade_jax/generation.py): decoding's
generate without a mesh, the sharded entry point with one."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest

import spec_cascade_jax as scj
from spec_cascade_jax.decoding import api
from spec_cascade_jax.decoding import UsageError
from spec_cascade_jax.testing import BigramModel, tiny_t5_pair


def test_the_front_door_documents_and_signs_every_argument():
  sig = inspect.signature(scj.generate)
  local = inspect.signature(api.generate)
  assert list(sig.parameters)[:len(local.parameters)] == list(local.parameters)
  assert [p.name for p in sig.parameters.values()
          if p.kind is inspect.Parameter.KEYWORD_ONLY] == ["mesh", "rules"]
  for name in ("mesh:", "rules:", "eos_id:", "input_lengths:", "pad_single_row:", "rng:",
               "seq_confidence:", "ngram_size:", "num_draft_tokens:", "top_k:"):
    assert name in scj.generate.__doc__, name


def test_without_a_mesh_it_is_decodings_generate():
  drafter, verifier = tiny_t5_pair(jax.random.PRNGKey(0), verifier_layers=1, drafter_layers=1)
  ids = np.ones((2, 5), np.int32)
  kw = dict(method="speculative", num_draft_tokens=2, max_new_tokens=4)
  a = scj.generate(drafter, verifier, ids, **kw)
  b = api.generate(drafter, verifier, ids, **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  # Positional arguments after input_ids pass through as well.
  c = scj.generate(drafter, verifier, ids, "speculative", None, None, 2, max_new_tokens=4)
  np.testing.assert_array_equal(c.tokens, a.tokens)


def test_mistakes_with_mesh_and_rules_are_named_before_any_work():
  traces = sum(api.TRACE_COUNTS.values())
  with pytest.raises(ValueError, match="rules= is used only with mesh="):
    scj.generate(None, None, np.ones((1, 3), np.int32), rules=(("batch", "data"),))
  from spec_cascade_jax import parallel
  with pytest.raises(TypeError, match="pass generate's arguments by keyword"):
    scj.generate(None, None, np.ones((1, 3), np.int32), "speculative",
                 mesh=parallel.make_mesh())
  assert sum(api.TRACE_COUNTS.values()) == traces


def test_sampling_needs_an_explicit_key():
  """rng=None at temperature > 0 raises (it used to be PRNGKey(0) for every
  call: two calls gave the same "samples"); greedy needs no key; a key draws
  its own samples, again the same for the same key."""
  model = BigramModel(jax.numpy.zeros((16, 16)))   # uniform: every draw is random
  ids = np.full((4, 3), 2, np.int32)
  kw = dict(method="verifier", max_new_tokens=8)
  traces = sum(api.TRACE_COUNTS.values())
  for temperature in (1.0, np.array([0.0, 0.0, 0.5, 0.0])):
    with pytest.raises(UsageError, match=r"temperature > 0 samples: pass "
                                         r"rng=jax\.random\.PRNGKey\(seed\)"):
      scj.generate(None, model, ids, temperature=temperature, **kw)
  assert sum(api.TRACE_COUNTS.values()) == traces   # raised before any compilation
  scj.generate(None, model, ids, temperature=0.0, **kw)   # greedy: no key needed
  one, again, two = (scj.generate(None, model, ids, temperature=1.0,
                                  rng=jax.random.PRNGKey(seed), **kw).tokens
                     for seed in (1, 1, 2))
  np.testing.assert_array_equal(one, again)
  assert not np.array_equal(one, two)
