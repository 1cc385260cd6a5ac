"""The loops' own work (evaluation/loop_costs.py): free models that end where
they are told, and LoopCosts from the times of a short and a long free decode."""

from __future__ import annotations

import numpy as np
import pytest

from spec_cascade_jax.decoding import generate
from spec_cascade_jax.evaluation import loop_costs
from spec_cascade_jax.evaluation.cost_model import LoopCost

V = 64


def test_a_free_model_emits_eos_at_its_stop_and_a_free_pair_accepts_every_draft():
  ids = np.full((1, 4), 5, np.int32)
  for stop in (0, 3):
    free = loop_costs.free_model(V, stop=stop)
    one = generate(None, free, ids, method="verifier", max_new_tokens=8)
    row = list(one.tokens[0])
    # Tokens 0 .. stop-1 are the model's own (never EOS or pad), token `stop` is EOS.
    assert row[stop] == 1 and all(t not in (0, 1) for t in row[:stop])
    assert int(one.stats["num_tokens"][0]) == stop + 1
    spec = generate(free, free, ids, method="speculative", num_draft_tokens=3,
                    max_new_tokens=8)
    np.testing.assert_array_equal(spec.tokens, one.tokens)
  never = loop_costs.free_model(V)
  spec = generate(never, never, ids, method="speculative", num_draft_tokens=3,
                  max_new_tokens=8)
  assert int(spec.stats["num_tokens"][0]) == 8 and int(spec.stats["rounds"][0]) == 2
  assert int(spec.stats["accepted"][0]) == int(spec.stats["draft_tokens"][0])
  # Another EOS: the first of a model's EOS ids ends the row; no free token is one.
  other = loop_costs.free_model(V, eos_id=(7, 9), stop=2)
  assert list(generate(None, other, ids, method="verifier", max_new_tokens=4,
                       eos_id=(7, 9)).tokens[0][:3]) [2] == 7
  with pytest.raises(ValueError, match="EOS"):
    loop_costs.free_model(V, eos_id=())


class Like:
  """The real model the free ones copy: its vocabulary and its EOS."""
  vocab_size = V
  eos_id = 1


def test_loop_costs_come_from_a_short_and_a_long_free_decode():
  sides = {"method": ("both", dict(method="speculative", num_draft_tokens=3, max_new_tokens=8)),
           "verifier": ("verifier", dict(method="verifier", max_new_tokens=8))}
  fns, costs = loop_costs.programs(sides, Like())
  assert set(fns) == {(s, n) for s in sides for n in ("short", "long")} | {loop_costs.WARM_UP}
  assert list(fns)[0] == loop_costs.WARM_UP   # timed first, and ignored
  fns[("method", "long")]()   # each runs and blocks
  # The method: 1 round, then 2 (8 tokens, 4 a round): 2 s a round, 1 s fixed.
  # The verifier: 1 token, then 8: 0.5 s a token, 1 s fixed.
  got = costs({("method", "short"): 3.0, ("method", "long"): 5.0,
               ("verifier", "short"): 1.5, ("verifier", "long"): 5.0})
  assert got == {"method": LoopCost(fixed=1.0, per_iteration=2.0),
                 "verifier": LoopCost(fixed=1.0, per_iteration=0.5)}
  # Noise never makes a cost negative.
  noisy = costs({("method", "short"): 3.0, ("method", "long"): 2.0,
                 ("verifier", "short"): 0.1, ("verifier", "long"): 5.0})
  assert noisy["method"] == LoopCost(fixed=3.0, per_iteration=0.0)
  assert noisy["verifier"].fixed == 0.0 and noisy["verifier"].per_iteration == pytest.approx(0.7)
  # Every free decode within one round: its time is all fixed cost.
  one = {"m": ("both", dict(method="speculative", num_draft_tokens=3, max_new_tokens=4))}
  _, one_costs = loop_costs.programs(one, Like())
  assert one_costs({("m", "short"): 2.0, ("m", "long"): 3.0}) == {"m": LoopCost(2.0, 0.0)}
  with pytest.raises(ValueError, match="'both' or 'verifier'"):
    loop_costs.programs({"m": ("drafter", sides["method"][1])}, Like())
