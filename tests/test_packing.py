"""Packed training rows (t5x-style): the batcher fills rows deterministically
and resumably, and the model keeps packed examples apart exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spec_cascade_jax.models.t5 import PRESETS, T5Model, segment_positions
from spec_cascade_jax.training import batching, trainer


def _pairs(n=300, vocab=64, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    x = [int(t) for t in rng.integers(3, vocab, size=int(rng.integers(1, 10)))]
    y = [int(t) for t in rng.integers(3, vocab, size=int(rng.integers(1, 14)))]
    out.append((x + [1], y + [1]))
  return out


def test_packed_rows_hold_every_example_once_and_resume():
  exs = _pairs()
  b = batching.PackedBatcher(exs, tokens_per_batch=96, max_len=32, seed=5)
  plan = b._epoch(0)
  seen = sorted(i for batch in plan for row in batch for i in row)
  assert seen == list(range(len(exs)))  # each example exactly once per epoch
  real = total = 0
  for rows in plan:
    batch = b.make_batch(rows)
    assert batch.inputs.shape == batch.targets.shape == (3, 32)  # one shape
    for r, ids in enumerate(rows):
      # the row is the concatenation of its examples, marked 1, 2, ... then 0
      want_in = [t for i in ids for t in exs[i][0]]
      want_tgt = [t for i in ids for t in exs[i][1]]
      np.testing.assert_array_equal(batch.inputs[r, :len(want_in)], want_in)
      assert not batch.inputs[r, len(want_in):].any()
      np.testing.assert_array_equal(batch.targets[r, :len(want_tgt)], want_tgt)
      seg = [s for s, i in enumerate(ids, 1) for _ in exs[i][1]]
      np.testing.assert_array_equal(batch.target_segments[r, :len(seg)], seg)
      # decoder inputs: each example starts with its own start token 0
      dec = []
      for i in ids:
        dec += [0] + exs[i][1][:-1]
      np.testing.assert_array_equal(batch.decoder_inputs[r, :len(dec)], dec)
    real += int((batch.targets > 0).sum())
    total += batch.targets.size
  assert real / total > 0.85  # packing wastes little (buckets: ~0.7)
  # the same (seed, epoch) gives the same plan; resuming mid-stream matches
  stream = [x for _, x in zip(range(len(plan) + 4), b.batches(0))]
  resumed = batching.PackedBatcher(exs, 96, 32, seed=5).batches(len(plan) - 2)
  for step in range(len(plan) - 2, len(plan) + 4):
    np.testing.assert_array_equal(next(resumed).targets, stream[step].targets)
  other = batching.PackedBatcher(exs, 96, 32, seed=6)._epoch(0)
  assert other != plan


def test_segment_positions_restart_per_segment():
  seg = jnp.array([[1, 1, 1, 2, 2, 3, 0, 0], [1, 2, 2, 2, 2, 2, 2, 2]])
  np.testing.assert_array_equal(segment_positions(seg),
                                [[0, 1, 2, 0, 1, 0, 0, 1], [0, 0, 1, 2, 3, 4, 5, 6]])


@pytest.fixture(scope="module")
def tiny_model():
  cfg = PRESETS["tiny-v1.1"]
  return T5Model.init(cfg, jax.random.PRNGKey(3))


@pytest.mark.slow
def test_packed_logits_equal_each_example_alone(tiny_model):
  exs = _pairs(40, vocab=tiny_model.vocab_size)
  b = batching.PackedBatcher(exs, tokens_per_batch=64, max_len=32, seed=0)
  rows = b._epoch(0)[0]
  batch = b.make_batch(rows)
  assert max(len(r) for r in rows) >= 3  # really packed
  logits = np.asarray(tiny_model.logits(batch.inputs, batch.decoder_inputs,
                                        **batch.model_kwargs))
  for r, ids in enumerate(rows):
    pt = 0
    for i in ids:
      x, y = exs[i]
      alone = np.asarray(tiny_model.logits(np.array([x]), np.array([[0] + y[:-1]])))[0]
      np.testing.assert_allclose(logits[r, pt:pt + len(y)], alone, atol=2e-5, rtol=1e-5)
      pt += len(y)


@pytest.mark.slow
def test_packed_inputs_are_checked(tiny_model):
  ids = np.ones((2, 8), np.int32)
  with pytest.raises(ValueError, match="both encoder_segment_ids"):
    tiny_model.logits(ids, ids, encoder_segment_ids=ids)
  with pytest.raises(ValueError, match="must match"):
    tiny_model.logits(ids, ids, encoder_segment_ids=ids, decoder_segment_ids=ids[:, :4])
  with pytest.raises(ValueError, match="at least one row"):
    batching.PackedBatcher(_pairs(4), tokens_per_batch=16, max_len=32)


@pytest.mark.slow
def test_label_smoothing_loss_equals_smoothed_one_hot(tiny_model):
  rng = np.random.default_rng(0)
  v = tiny_model.vocab_size
  inputs = rng.integers(3, v, (2, 6)).astype(np.int32)
  targets = rng.integers(3, v, (2, 7)).astype(np.int32)
  targets[1, 4:] = 0  # padding is ignored
  dec = np.concatenate([np.zeros((2, 1), np.int32), targets[:, :-1]], 1)
  for ls in (0.0, 0.1):
    loss, ntok = trainer.loss_fn(tiny_model.params, tiny_model.config, inputs, dec,
                                 targets, ls)
    logits = tiny_model.logits(inputs, dec)
    labels = jax.nn.one_hot(targets, v) * (1 - ls) + ls / v
    xent = optax.softmax_cross_entropy(logits, labels)
    mask = targets > 0
    want = float((xent * mask).sum() / mask.sum())
    assert float(ntok) == mask.sum()
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


@pytest.mark.slow
def test_packed_training_lowers_the_loss(tmp_path):
  rng = np.random.default_rng(1)
  exs = []
  for _ in range(256):
    x = [int(t) for t in rng.integers(3, 64, size=int(rng.integers(2, 8)))]
    exs.append((x + [1], x + [1]))  # copy task
  cfg = trainer.TrainConfig(num_steps=40, learning_rate=3e-3, warmup_steps=5,
                            tokens_per_batch=64, max_len=32, pack=True,
                            eval_every=40, checkpoint_every=40, log_every=10)
  _, hist = trainer.train(PRESETS["tiny-v1.1"], exs[:224], exs[224:], cfg,
                          str(tmp_path), progress=False)
  losses = [l for _, l in hist["train_loss"]]
  assert losses[-1] < losses[0] - 0.5, losses
