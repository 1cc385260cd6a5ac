"""Trainer: loss goes down, batches are bucketed and resumable, checkpoints resume."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import pytest

from spec_cascade_jax.models.t5 import PRESETS
from spec_cascade_jax.training import batching, trainer


def _copy_task(n=96, vocab=64, seed=0):
  """Target = input copied: learnable by a tiny T5 in a few dozen steps."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    length = int(rng.integers(2, 12))
    x = [int(t) for t in rng.integers(3, vocab, size=length)]
    out.append((x + [1], x + [1]))
  return out


def test_bucketed_batches_cover_lengths_and_resume():
  exs = _copy_task(200)
  b = batching.BucketedBatcher(exs, tokens_per_batch=64, max_len=16, seed=3)
  stream = list(zip(range(25), b.batches(0)))
  for _, batch in stream:
    assert batch.inputs.shape[1] in b.boundaries
    assert batch.inputs.shape[0] * batch.inputs.shape[1] <= max(64, batch.inputs.shape[1])
    # every row ends in EOS and is left-aligned
    for row in batch.targets:
      n = int((row > 0).sum())
      assert row[n - 1] == 1 and not row[n:].any()
    np.testing.assert_array_equal(batch.decoder_inputs[:, 0], 0)
    np.testing.assert_array_equal(batch.decoder_inputs[:, 1:], batch.targets[:, :-1])
  # resuming at step 17 (possibly in the next epoch) reproduces the same batches
  resumed = b.batches(17)
  for step in range(17, 25):
    np.testing.assert_array_equal(next(resumed).inputs, stream[step][1].inputs)
  # padding waste is bounded by the bucketing
  tot = sum(bt.inputs.size for _, bt in stream)
  real = sum(int((bt.inputs > 0).sum()) for _, bt in stream)
  assert real / tot > 0.5


def test_truncation_keeps_eos():
  b = batching.BucketedBatcher([(list(range(3, 40)) + [1], [5, 1])], max_len=16)
  batch = b.make_batch(np.array([0]))
  assert batch.inputs.shape == (1, 16) and batch.inputs[0, -1] == 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  cfg = trainer.TrainConfig(num_steps=60, learning_rate=3e-3, warmup_steps=5,
                            tokens_per_batch=128, max_len=16, eval_every=30,
                            checkpoint_every=30, seed=1, log_every=10)
  workdir = str(tmp_path_factory.mktemp("train"))
  exs = _copy_task(256)
  model, hist = trainer.train(PRESETS["tiny-v1.1"], exs[:224], exs[224:], cfg, workdir,
                              progress=False)
  return cfg, workdir, exs, model, hist


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(tiny_run):
  _, _, _, _, hist = tiny_run
  losses = [l for _, l in hist["train_loss"]]
  assert losses[-1] < losses[0] - 0.5, losses
  assert hist["eval"][-1]["valid_loss"] < hist["eval"][0]["valid_loss"], hist["eval"]


@pytest.mark.slow
def test_resume_continues_from_checkpoint(tiny_run):
  cfg, workdir, exs, model, hist = tiny_run
  assert trainer.latest_checkpoint(workdir).endswith("checkpoint_60.msgpack")
  # Asking for the same number of steps again restores and does no more work.
  again, hist2 = trainer.train(PRESETS["tiny-v1.1"], exs[:224], exs[224:], cfg, workdir,
                               progress=False)
  for a, b in zip(jax.tree_util.tree_leaves(model.params),
                  jax.tree_util.tree_leaves(again.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert len(hist2["eval"]) == len(hist["eval"])


@pytest.mark.slow
def test_corrupt_checkpoint_is_reported(tiny_run, tmp_path):
  cfg, workdir, exs, _, _ = tiny_run
  bad = tmp_path / "bad"
  bad.mkdir()
  src = trainer.latest_checkpoint(workdir)
  data = open(src, "rb").read()
  (bad / os.path.basename(src)).write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match="corrupt"):
    trainer.train(PRESETS["tiny-v1.1"], exs[:224], exs[224:], cfg, str(bad),
                  progress=False)


def _loss_inputs(seed):
  """A tiny T5, a batch of 2 (the second row padded after 3 targets), and the
  model's float64 logits and log-probabilities at every target position."""
  from spec_cascade_jax.models.t5 import T5Model
  cfg = PRESETS["tiny-v1.0"]
  params = T5Model.init(cfg, jax.random.PRNGKey(0)).params
  rng = np.random.default_rng(seed)
  inputs = rng.integers(3, 64, (2, 6)).astype(np.int32)
  targets = rng.integers(3, 64, (2, 5)).astype(np.int32)
  targets[1, 3:] = 0  # padding is not scored
  dec = np.concatenate([np.zeros((2, 1), np.int32), targets[:, :-1]], 1)
  logits = np.asarray(T5Model(config=cfg, params=params).logits(inputs, dec), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return cfg, params, (inputs, dec, targets), logits, logp, rng


@pytest.mark.slow
def test_kd_loss_mixes_reference_and_teacher_cross_entropy():
  """loss_fn's kd_weight share is -sum_v softmax(teacher)_v log p_v, per target."""
  cfg, params, (inputs, dec, targets), _, logp, rng = _loss_inputs(0)
  teacher = rng.normal(size=(2, 5, 64)).astype(np.float32) * 3
  pt = np.exp(teacher - teacher.max(-1, keepdims=True))
  pt /= pt.sum(-1, keepdims=True)
  ref = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  soft = -(pt * logp).sum(-1)
  mask = targets > 0
  for w in (0.0, 0.3, 1.0):
    want = (((1 - w) * ref + w * soft) * mask).sum() / mask.sum()
    got, ntok = trainer.loss_fn(params, cfg, inputs, dec, targets, 0.0, None,
                                teacher, w)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert int(ntok) == mask.sum()


@pytest.mark.slow
def test_placeholder_weight_scales_positions_whose_target_or_argmax_is_a_placeholder():
  cfg, params, (inputs, dec, targets), logits, logp, _ = _loss_inputs(1)
  xent = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  argmax = logits.argmax(-1)
  mask = np.zeros(cfg.vocab_size, bool)
  mask[[targets[0, 1], argmax[1, 0]]] = True  # one by reference, one by prediction
  weighted = (mask[targets] | mask[argmax]) & (targets > 0)
  assert 2 <= weighted.sum() < (targets > 0).sum()
  w = np.where(weighted, 3.0, 1.0) * (targets > 0)
  got, ntok = trainer.loss_fn(params, cfg, inputs, dec, targets,
                              placeholder_mask=mask, placeholder_weight=3.0)
  np.testing.assert_allclose(float(got), (xent * w).sum() / (targets > 0).sum(), rtol=1e-5)
  plain, _ = trainer.loss_fn(params, cfg, inputs, dec, targets, placeholder_mask=mask)
  np.testing.assert_allclose(float(plain), (xent * (targets > 0)).sum() / (targets > 0).sum(),
                             rtol=1e-5)


def test_placeholder_weight_needs_a_mask_of_the_vocabulary_size():
  exs = _copy_task(8)
  with pytest.raises(ValueError, match="placeholder_weight=0.0 must be > 0"):
    trainer.TrainConfig(placeholder_weight=0.0)
  cfg = trainer.TrainConfig(num_steps=1, placeholder_weight=2.0)
  with pytest.raises(ValueError, match="placeholder_piece_mask"):
    trainer.train(PRESETS["tiny-v1.1"], exs, exs, cfg, None, progress=False)
  with pytest.raises(ValueError, match="placeholder_mask has shape"):
    trainer.train(PRESETS["tiny-v1.1"], exs, exs, cfg, None, progress=False,
                  placeholder_mask=np.zeros(7, bool))


@pytest.mark.slow
def test_kd_student_learns_the_teachers_choices(tiny_run):
  """With kd_weight=1 the references do not matter: a student trained on
  scrambled targets still learns the copy task from the copying teacher, and
  one trained on the same targets without a teacher does not."""
  from spec_cascade_jax.decoding.api import generate
  cfg0, _, exs, teacher, _ = tiny_run
  rng = np.random.default_rng(5)
  scrambled = [(x, [int(t) for t in rng.integers(3, 64, len(y) - 1)] + [1])
               for x, y in exs[:224]]
  cfg = trainer.TrainConfig(num_steps=60, learning_rate=3e-3, warmup_steps=5,
                            tokens_per_batch=128, max_len=16, eval_every=60,
                            checkpoint_every=1000, seed=1, log_every=10, kd_weight=1.0)
  student, _ = trainer.train(PRESETS["tiny-v1.1"], scrambled, exs[224:], cfg, None,
                             progress=False, teacher=teacher)
  plain, _ = trainer.train(PRESETS["tiny-v1.1"], scrambled, exs[224:],
                           trainer.TrainConfig(**{**cfg.__dict__, "kd_weight": 0.0}), None,
                           progress=False)
  val = exs[224:]
  ids = np.zeros((len(val), 16), np.int32)
  for i, (x, _) in enumerate(val):
    ids[i, :len(x)] = x

  def agreement(m):
    out = np.asarray(generate(m, m, ids, method="verifier", max_new_tokens=12).tokens)
    want = np.asarray(generate(teacher, teacher, ids, method="verifier",
                               max_new_tokens=12).tokens)
    return float((out == want)[want > 0].mean())
  a_kd, a_plain = agreement(student), agreement(plain)
  assert a_kd > a_plain + 0.2, (a_kd, a_plain)


@pytest.mark.slow
def test_kd_needs_teacher_and_weight(tiny_run):
  _, _, exs, teacher, _ = tiny_run
  with pytest.raises(ValueError, match="teacher and kd_weight"):
    trainer.train(PRESETS["tiny-v1.1"], exs[:8], exs[8:16],
                  trainer.TrainConfig(num_steps=1, kd_weight=0.5), None, progress=False)
  with pytest.raises(ValueError, match="teacher and kd_weight"):
    trainer.train(PRESETS["tiny-v1.1"], exs[:8], exs[8:16], trainer.TrainConfig(num_steps=1),
                  None, progress=False, teacher=teacher)


def test_adafactor_moves_every_parameter_at_the_same_relative_rate():
  """t5x's optimizer: an update is lr x the parameter's RMS x the normalised
  gradient, so T5's std-1 embedding and a std-0.05 kernel change by the same
  fraction of their size (AdamW moves both by about lr in absolute terms)."""
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  params = {"embedding": jnp.asarray(rng.normal(0, 1.0, (256, 64)), jnp.float32),
            "kernel": jnp.asarray(rng.normal(0, 0.05, (64, 256)), jnp.float32)}
  grads = {"embedding": jnp.asarray(rng.normal(0, 1e-2, (256, 64)), jnp.float32),
           "kernel": jnp.asarray(rng.normal(0, 1e-2, (64, 256)), jnp.float32)}

  def relative_step(name):
    cfg = trainer.TrainConfig(optimizer=name, learning_rate=1e-2, warmup_steps=1,
                              num_steps=10)
    opt = trainer.make_optimizer(cfg)
    state = opt.init(params)
    for _ in range(3):
      updates, state = opt.update(grads, state, params)
    rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x))))  # noqa: E731
    return {k: rms(updates[k]) / rms(params[k]) for k in params}

  ada, adam = relative_step("adafactor"), relative_step("adamw")
  assert ada["embedding"] == pytest.approx(ada["kernel"], rel=0.1)
  assert adam["kernel"] > 10 * adam["embedding"]


def test_wsd_schedule_warms_up_holds_the_peak_then_decays_linearly():
  cfg = trainer.TrainConfig(num_steps=100, warmup_steps=10, learning_rate=1.0,
                            end_lr_fraction=0.1, schedule="wsd", decay_fraction=0.2)
  lr = trainer.learning_rate_schedule(cfg)
  assert float(lr(0)) == 0.0
  assert float(lr(5)) == pytest.approx(0.5)
  for step in (10, 50, 80):  # stable: from the end of warmup to the last 20 steps
    assert float(lr(step)) == pytest.approx(1.0)
  assert float(lr(90)) == pytest.approx(0.55)  # halfway down the linear decay
  assert float(lr(100)) == pytest.approx(0.1)
  cosine = trainer.learning_rate_schedule(dataclasses.replace(cfg, schedule="cosine"))
  assert float(cosine(50)) < 0.9 and float(cosine(100)) == pytest.approx(0.1)


def test_an_unknown_schedule_or_decay_fraction_is_rejected_when_configured():
  with pytest.raises(ValueError, match="schedule='linear' is not one of"):
    trainer.TrainConfig(schedule="linear")
  with pytest.raises(ValueError, match="decay_fraction=0.0 must be in"):
    trainer.TrainConfig(schedule="wsd", decay_fraction=0.0)


def test_an_unknown_optimizer_is_rejected_when_configured():
  with pytest.raises(ValueError, match="optimizer='adam' is not one of"):
    trainer.TrainConfig(optimizer="adam")


def test_a_checkpoint_of_another_optimizer_is_named_on_resume(tmp_path):
  """Resuming an AdamW run with optimizer='adafactor' fails clearly, before training."""
  import jax.numpy as jnp
  params = {"w": jnp.ones((4, 4), jnp.float32)}
  states = {}
  for name in ("adamw", "adafactor"):
    opt = trainer.make_optimizer(trainer.TrainConfig(optimizer=name, num_steps=10))
    states[name] = trainer.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                      opt_state=opt.init(params))
  path = trainer.save_checkpoint(str(tmp_path), states["adamw"])
  with pytest.raises(ValueError, match="TrainConfig.optimizer"):
    trainer.restore_checkpoint(path, states["adafactor"])


@pytest.mark.slow
def test_data_offset_steps_starts_the_stream_where_the_initial_run_stopped(monkeypatch,
                                                                          tmp_path):
  """A run that continues a trained model reads the batches after the ones it
  read: the stream starts at data_offset_steps (+ the resumed step)."""
  with pytest.raises(ValueError, match="data_offset_steps"):
    trainer.TrainConfig(data_offset_steps=-1)
  starts = []
  original = batching.BucketedBatcher.batches

  def spy(self, start):
    starts.append(start)
    return original(self, start)

  monkeypatch.setattr(batching.BucketedBatcher, "batches", spy)
  cfg = trainer.TrainConfig(num_steps=2, warmup_steps=1, tokens_per_batch=64, max_len=16,
                            eval_every=100, checkpoint_every=100, data_offset_steps=37)
  exs = _copy_task(64)
  trainer.train(PRESETS["tiny-v1.1"], exs[:48], exs[48:], cfg, str(tmp_path), progress=False)
  assert starts == [37]
