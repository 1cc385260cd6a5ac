"""The cost model's arithmetic (evaluation/cost_model.py) on fixed step costs
and counts, every expected value computed by hand. No timing here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spec_cascade_jax.evaluation import cost_model
from spec_cascade_jax.evaluation.cost_model import LoopCost, StepCosts

# encode_d 2, encode_v 5, drafter step 1; verifier chunks c(1) 4, c(3) 7, c(6) 10,
# so c(2) = 5.5, c(4) = 8, c(5) = 9 by linear interpolation.
COSTS = StepCosts(encode_drafter=2.0, encode_verifier=5.0, drafter_step=1.0,
                  verifier_chunk={1: 4.0, 3: 7.0, 6: 10.0})
VERIFIER = {"num_tokens": np.array([10, 6]), "rounds": np.array([10, 6])}


def test_chunk_cost_is_linear_between_measured_widths():
  assert [COSTS.chunk(k) for k in (1, 2, 3, 4, 5, 6)] == [4.0, 5.5, 7.0, 8.0, 9.0, 10.0]
  assert COSTS.chunk(3.5) == pytest.approx(7.5)
  assert COSTS.verifier_step == 4.0 and COSTS.max_chunk == 6
  with pytest.raises(ValueError, match="outside the measured widths"):
    COSTS.chunk(7)
  with pytest.raises(ValueError, match="one-token step"):
    StepCosts(1.0, 1.0, 1.0, {2: 3.0})
  with pytest.raises(ValueError, match="finite seconds"):
    StepCosts(1.0, -1.0, 1.0, {1: 3.0})


def test_step_costs_survive_a_json_round_trip():
  back = StepCosts.from_dict(json.loads(json.dumps(COSTS.to_dict())))
  assert back == COSTS and back.chunk(2) == 5.5


def test_verifier_and_drafter_pay_an_encoder_per_example_and_a_step_per_token():
  v = cost_model.predict("verifier", VERIFIER, COSTS)
  assert v.seconds == 2 * 5 + 16 * 4 == 74
  assert v.parts == {"encode_drafter": 0.0, "encode_verifier": 10.0, "drafter_steps": 0.0,
                     "verifier_calls": 64.0, "loop": 0.0}
  d = cost_model.predict("drafter", {"num_tokens": [10, 6]}, COSTS)
  assert d.seconds == 2 * 2 + 16 * 1 == 20 and d.num_examples == 2


def test_speculative_rounds_cost_a_chunk_of_gamma_plus_one_or_of_their_mean_width():
  stats = {"num_tokens": [10, 6], "rounds": [3, 2], "drafter_steps": [18, 12]}
  # encoders 2·(2+5), 30 drafter steps, 5 chunks of γ+1 = 6 at 10 each
  p = cost_model.predict("speculative", stats, COSTS, num_draft_tokens=5)
  assert p.seconds == 14 + 30 + 50
  assert cost_model.relative_latency("spec_cascade", stats, VERIFIER, COSTS, 5) == 94 / 74
  # verified_tokens: row 0 scored 12 tokens in 3 rounds (width 4, c = 8), row 1
  # 6 in 2 (width 3, c = 7)
  adaptive = {**stats, "verified_tokens": [12, 6]}
  assert cost_model.predict("speculative", adaptive, COSTS, 5).seconds == 14 + 30 + 3 * 8 + 2 * 7
  with pytest.raises(ValueError, match="num_draft_tokens"):
    cost_model.predict("speculative", stats, COSTS)


def test_measured_rounds_price_a_speculative_round_whole():
  """With round costs R(w) (w drafter steps and a chunk of w, timed together)
  a batch-1 round costs R(w), split between the models as their calls apart."""
  rc = StepCosts(2.0, 5.0, 1.0, {1: 4.0, 3: 7.0, 6: 10.0}, round_cost={1: 6.0, 6: 21.0})
  assert [rc.round(w) for w in (1, 4, 6)] == [6.0, 15.0, 21.0]   # linear: 6 + 3 per width
  assert COSTS.round(4) == 4 * 1.0 + 8.0                          # none measured: apart
  stats = {"num_tokens": [10, 6], "rounds": [3, 2], "drafter_steps": [18, 12]}
  # No verified_tokens: rounds of γ+1 = 6, 5 of them at 21.
  p = cost_model.predict("speculative", stats, rc, 5)
  assert p.seconds == 14 + 5 * 21
  # Apart a round of 6 costs 6·1 + 10: the drafter's share is 6/16.
  assert p.parts["drafter_steps"] == pytest.approx(5 * 21 * 6 / 16)
  assert p.parts["verifier_calls"] == pytest.approx(5 * 21 * 10 / 16)
  # verified_tokens: widths 4 (3 rounds, R = 15) and 3 (2 rounds, R = 12).
  adaptive = {**stats, "verified_tokens": [12, 6]}
  assert cost_model.predict("speculative", adaptive, rc, 5).seconds == 14 + 3 * 15 + 2 * 12
  # Leviathan's speed-up prices a round of γ+1 by R as well.
  a, g = 0.5, 2
  want = cost_model.expected_tokens_per_round(a, g) * 4.0 / rc.round(3)
  assert cost_model.speculative_speedup(a, g, rc) == pytest.approx(want)
  back = StepCosts.from_dict(json.loads(json.dumps(rc.to_dict())))
  assert back == rc and back.round_cost == {1: 6.0, 6: 21.0}
  with pytest.raises(ValueError, match="outside the measured widths"):
    rc.round(7)
  with pytest.raises(ValueError, match="round_cost"):
    StepCosts(1.0, 1.0, 1.0, {1: 3.0}, round_cost={0: 1.0})


def test_step_cost_programs_make_rounds_from_both_set_ups():
  import jax
  from spec_cascade_jax import testing
  from spec_cascade_jax.evaluation import step_costs
  d = testing.random_bigram(jax.random.PRNGKey(0), 8)
  v = testing.random_bigram(jax.random.PRNGKey(1), 8)
  fns, costs = step_costs.programs(d, v, input_length=4, max_new_tokens=4,
                                   num_draft_tokens=2, inner=4)
  assert sorted(k for k in fns if k[0] == "round") == [("round", 1), ("round", 2),
                                                        ("round", 3)]
  seconds = {("drafter", 0): 1.0, ("drafter", 1): 3.0, ("verifier", 0): 2.0,
             ("verifier", 1): 6.0, ("verifier", 2): 10.0, ("verifier", 3): 14.0,
             ("round", 1): 11.0, ("round", 2): 19.0, ("round", 3): 27.0}
  c = costs(seconds)
  assert c.drafter_step == 0.5 and c.verifier_chunk == {1: 1.0, 2: 2.0, 3: 3.0}
  assert c.round_cost == {1: 2.0, 2: 4.0, 3: 6.0}    # (round − 1 − 2) / 4
  # One model alone has no rounds.
  alone, alone_costs = step_costs.programs(None, v, input_length=4, max_new_tokens=4,
                                           num_draft_tokens=2, inner=4)
  assert not any(k[0] == "round" for k in alone)
  assert alone_costs({k: x for k, x in seconds.items() if k[0] == "verifier"}).round_cost is None


def test_round_programs_keep_every_drafter_step():
  """A round program's result depends on its drafter at every width: XLA
  drops what the result does not need, and a width-1 round whose chunk leaves
  out its one draft read below c(1), the drafter dropped."""
  import jax
  import jax.numpy as jnp
  from spec_cascade_jax import testing
  from spec_cascade_jax.evaluation import step_costs
  v = testing.random_bigram(jax.random.PRNGKey(1), 8)
  ids = jnp.asarray([[3, 4, 5, 6]], jnp.int32)
  for width in (1, 2):
    outs = {int(step_costs.round_loop(testing.random_bigram(jax.random.PRNGKey(s), 8), v,
                                      ids, width=width, cache_len=16, inner=3)[0])
            for s in range(2, 8)}
    assert len(outs) > 1, width


def test_prompt_lookup_sequential_baselines_and_seq_cascade():
  # 3 chunk rounds (15 drafts / γ=5) at c(6) and 3 one-token rounds at c(1); no drafter
  look = {"num_tokens": [10, 6], "rounds": [4, 2], "draft_tokens": [10, 5]}
  assert cost_model.predict("prompt_lookup", look, COSTS, 5).seconds == 10 + 30 + 12
  # token_cascade, γ = 2: catch-up chunks of 3 at c(3) = 7
  base = {"num_tokens": [10, 6], "drafter_steps": [10, 6]}
  tc = {**base, "sequential_verifier_calls": [2, 1]}
  assert cost_model.predict("token_cascade", tc, COSTS, 2).seconds == 14 + 16 + 3 * 7
  # With round costs a catch-up chunk costs what it costs after the drafter's
  # steps in a round: R(3) − 3·c_d = 12 − 3 = 9 (never below c(3) = 7).
  rounds = StepCosts(2.0, 5.0, 1.0, {1: 4.0, 3: 7.0, 6: 10.0}, round_cost={1: 5.0, 3: 12.0})
  assert cost_model.predict("token_cascade", tc, rounds, 2).seconds == 14 + 16 + 3 * 9
  cheap = StepCosts(2.0, 5.0, 1.0, {1: 4.0, 3: 7.0, 6: 10.0}, round_cost={1: 5.0, 3: 8.0})
  assert cost_model.predict("token_cascade", tc, cheap, 2).seconds == 14 + 16 + 3 * 7
  oc = {**base, "sequential_verifier_calls": [10, 6]}
  assert cost_model.predict("oracle_cascade", oc, COSTS).seconds == 14 + 16 + 16 * 4
  # seq_cascade: row 1 deferred, the verifier decoded 7 tokens; both encoders every row
  sc = {**base, "sequential_verifier_calls": [0, 7]}
  assert cost_model.predict("seq_cascade", sc, COSTS).seconds == 14 + 16 + 7 * 4


def test_the_loops_own_work_costs_a_fixed_part_per_decode_and_one_per_iteration():
  loop = LoopCost(fixed=0.5, per_iteration=0.25)
  # Verifier-only: 2 decodes, 16 tokens, one iteration a token.
  v = cost_model.predict("verifier", VERIFIER, COSTS, loop=loop)
  assert v.parts["loop"] == 2 * 0.5 + 16 * 0.25 and v.seconds == 74 + 5
  # The kernel and prompt lookup: one iteration a round (5 and 6 rounds).
  spec = {"num_tokens": [10, 6], "rounds": [3, 2], "drafter_steps": [18, 12]}
  assert cost_model.predict("speculative", spec, COSTS, 5, loop).parts["loop"] == 1 + 5 * 0.25
  look = {"num_tokens": [10, 6], "rounds": [4, 2], "draft_tokens": [10, 5]}
  assert cost_model.predict("prompt_lookup", look, COSTS, 5, loop).parts["loop"] == 1 + 1.5
  # token_cascade: one a token (its drafter steps), not one a verifier call.
  base = {"num_tokens": [10, 6], "drafter_steps": [10, 6], "rounds": [2, 1],
          "sequential_verifier_calls": [2, 1]}
  assert cost_model.predict("token_cascade", base, COSTS, 2, loop).parts["loop"] == 1 + 4
  # seq_cascade: the drafter's loop and the deferred row's verifier loop (7 steps).
  sc = {**base, "rounds": [0, 7], "sequential_verifier_calls": [0, 7]}
  np.testing.assert_array_equal(cost_model.loop_iterations("seq_cascade", sc), [10, 13])
  assert cost_model.predict("seq_cascade", sc, COSTS, loop=loop).parts["loop"] == 1 + 23 * 0.25
  # Each side of a relative latency pays its own loop.
  ver_loop = LoopCost(fixed=1.0, per_iteration=0.0)
  assert cost_model.relative_latency("speculative", spec, VERIFIER, COSTS, 5, loop=loop,
                                     verifier_loop=ver_loop) == (94 + 2.25) / (74 + 2)
  assert LoopCost.from_dict(json.loads(json.dumps(loop.to_dict()))) == loop
  with pytest.raises(ValueError, match="finite seconds"):
    LoopCost(fixed=-1.0, per_iteration=0.0)


def test_a_scalar_stat_is_one_example_and_mismatched_examples_raise():
  assert cost_model.predict("verifier", {"num_tokens": 3}, COSTS).seconds == 5 + 12
  with pytest.raises(ValueError, match="same examples"):
    cost_model.relative_latency("verifier", {"num_tokens": 3}, VERIFIER, COSTS)
  with pytest.raises(KeyError, match="rounds"):
    cost_model.predict("speculative", {"num_tokens": 3}, COSTS, 5)


def test_fastest_picks_the_least_predicted_relative_latency():
  g3 = {"num_tokens": [10, 6], "rounds": [4, 3], "drafter_steps": [16, 12]}
  g5 = {"num_tokens": [10, 6], "rounds": [3, 2], "drafter_steps": [18, 12]}
  # γ = 3: 14 + 28 + 7·c(4) = 98; γ = 5: 94
  best, rel = cost_model.fastest({3: ("speculative", g3, 3), 5: ("speculative", g5, 5)},
                                 VERIFIER, COSTS)
  assert best == 5 and rel == {3: 98 / 74, 5: 94 / 74}


def test_leviathan_expected_tokens_and_speedup():
  assert cost_model.expected_tokens_per_round(0.5, 2) == 1.75   # (1 − 0.5³) / 0.5
  assert cost_model.expected_tokens_per_round(1.0, 4) == 5.0
  assert cost_model.expected_tokens_per_round(0.0, 4) == 1.0
  # a round: 3 drafter steps + c(3) = 10; 1.75 tokens a round against c(1) = 4 each
  assert cost_model.speculative_speedup(0.5, 2, COSTS) == pytest.approx(1.75 * 4 / 10)
  # with the encoders, 7 tokens: verifier 5 + 7·4 = 33; speculative 2 + 5 + 4 rounds·10 = 47
  assert cost_model.speculative_speedup(0.5, 2, COSTS, mean_tokens=7) == pytest.approx(33 / 47)
  # Each side's loop: a round 10 + 2, a verifier token 4 + 1; fixed 3 and 1 a decode.
  loop, ver_loop = LoopCost(3.0, 2.0), LoopCost(1.0, 1.0)
  assert cost_model.speculative_speedup(0.5, 2, COSTS, loop=loop, verifier_loop=ver_loop
                                        ) == pytest.approx(1.75 * 5 / 12)
  assert cost_model.speculative_speedup(0.5, 2, COSTS, 7, loop, ver_loop) == pytest.approx(
      (5 + 1 + 7 * 5) / (2 + 5 + 3 + 4 * 12))


def test_best_num_draft_tokens_maximises_the_predicted_speedup():
  # a = 0.8: E = 1.8, 2.44, 2.952, 3.3616, 3.68928 for γ = 1..5; round costs
  # 7.5, 10, 12, 14, 16: speed-ups 0.96, 0.976, 0.984, 0.9605, 0.9223
  best, speed = cost_model.best_num_draft_tokens(0.8, COSTS)
  assert best == 3 and list(speed) == [1, 2, 3, 4, 5]
  assert speed[3] == pytest.approx(2.952 * 4 / 12)
  assert speed[5] == pytest.approx(3.68928 * 4 / 16)
  assert cost_model.best_num_draft_tokens(0.8, COSTS, candidates=[4, 5])[0] == 4
  # A loop that costs 10 a round favours longer rounds: 2.952·4/22 < 3.68928·4/26.
  assert cost_model.best_num_draft_tokens(0.8, COSTS, loop=LoopCost(0.0, 10.0))[0] == 5


def test_examples_of_other_shapes_take_their_own_step_costs():
  # example 0 in bucket 32 (COSTS), example 1 in bucket 64 (every cost doubled)
  double = StepCosts(4.0, 10.0, 2.0, {1: 8.0, 3: 14.0, 6: 20.0})
  spec = {"num_tokens": [10, 6], "rounds": [3, 2], "drafter_steps": [18, 12]}
  # method: (7 + 18 + 3·10) + 2·(7 + 12 + 2·10) = 55 + 78; verifier: (5 + 40) + 2·(5 + 24)
  rel = cost_model.relative_latency("speculative", spec, VERIFIER, {32: COSTS, 64: double},
                                    5, groups=[32, 64])
  assert rel == (55 + 78) / (45 + 58)
  with pytest.raises(ValueError, match="same examples"):
    cost_model.relative_latency("speculative", spec, VERIFIER, {32: COSTS}, 5, groups=[32])
