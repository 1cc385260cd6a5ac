"""An optax trainer for T5 drafters and verifiers (teacher forcing).

    state = train(model_config, train_examples, valid_examples, TrainConfig(...),
                  workdir="runs/verifier")

- one jitted train step (donated state), AdamW or Adafactor, warmup then
  cosine or warmup-stable-decay, gradient clipping, optional label smoothing;
- length-bucketed batches, or packed rows with `pack=True` (t5x-style, one
  shape; on gettext_en_de 88% of input and 98% of target slots hold real
  tokens, against 67% / 75% with buckets; training/batching.py);
- periodic validation loss and greedy BLEU, shown on a tqdm bar;
- resumable: the latest checkpoint in `workdir` is restored and the batch
  stream continues at the same step (the data order is a function of the step).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from spec_cascade_jax.models.t5 import T5Config, T5Model
from spec_cascade_jax.training.batching import Batch, BucketedBatcher, PackedBatcher

Example = tuple[Sequence[int], Sequence[int]]
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  num_steps: int = 2000
  learning_rate: float = 2e-3
  warmup_steps: int = 200
  end_lr_fraction: float = 0.05
  weight_decay: float = 0.01
  grad_clip: float = 1.0
  label_smoothing: float = 0.0
  # Padded tokens per side per batch; with `pack`, rows of `max_len` slots.
  tokens_per_batch: int = 4096
  pack: bool = False
  max_len: int = 128
  seed: int = 0
  eval_every: int = 500
  checkpoint_every: int = 250
  eval_bleu_examples: int = 200
  eval_max_new_tokens: int = 64
  keep_checkpoints: int = 2
  log_every: int = 50
  # Token-level knowledge distillation (Hinton et al. 2015; Kim & Rush 2016's
  # word-level KD): the loss is (1 - kd_weight) * cross-entropy with the
  # reference + kd_weight * cross-entropy with the teacher's distribution at
  # each reference prefix. Needs `train(..., teacher=...)`.
  kd_weight: float = 0.0
  # Weight of the positions whose reference token, or the model's own argmax,
  # is a format-placeholder piece (`vocab.placeholder_piece_mask`): > 1 trains
  # harder on emitting the placeholders a message needs and on not adding
  # ones it lacks. Needs `train(..., placeholder_mask=...)` when != 1.
  placeholder_weight: float = 1.0
  # "adamw", or "adafactor" (t5x's optimizer: factored second moments and
  # updates scaled by each parameter's RMS, so T5's std-1 embedding moves at
  # the same relative rate as its d_model^-0.5 kernels; weight_decay unused).
  optimizer: str = "adamw"
  # "cosine": linear warmup, then cosine decay over the rest of the run.
  # "wsd" (warmup-stable-decay; Hu et al. 2024, Hagele et al. 2024): linear
  # warmup, the peak rate held, then a linear decay over the last
  # `decay_fraction` of the steps. Both end at learning_rate * end_lr_fraction.
  schedule: str = "cosine"
  decay_fraction: float = 0.2
  # Batches to skip at the start of the data stream: a run that continues
  # from a trained model (recipes' `init_from`) with the same seed sets this to
  # that run's steps, so it reads the data its starting point has not seen.
  data_offset_steps: int = 0

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"TrainConfig.optimizer={self.optimizer!r} is not one of {OPTIMIZERS}; "
                       "pass 'adamw' or 'adafactor'.")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"TrainConfig.schedule={self.schedule!r} is not one of {SCHEDULES}; "
                       "pass 'cosine' or 'wsd'.")
    if not 0.0 < self.decay_fraction <= 1.0:
      raise ValueError(f"TrainConfig.decay_fraction={self.decay_fraction} must be in (0, 1]: "
                       "the share of the steps spent decaying under schedule='wsd'.")
    if self.placeholder_weight <= 0:
      raise ValueError(f"TrainConfig.placeholder_weight={self.placeholder_weight} must be > 0 "
                       "(1.0 weighs placeholder positions like any other).")
    if self.data_offset_steps < 0:
      raise ValueError(f"TrainConfig.data_offset_steps={self.data_offset_steps} must be >= 0: "
                       "the number of batches to skip at the start of the data stream.")


OPTIMIZERS = ("adamw", "adafactor")
SCHEDULES = ("cosine", "wsd")


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
  """The learning rate at each step, as `cfg.schedule` says."""
  end = cfg.learning_rate * cfg.end_lr_fraction
  total = max(cfg.num_steps, cfg.warmup_steps + 1)
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=total, end_value=end)
  decay = max(1, min(int(round(cfg.decay_fraction * total)), total - cfg.warmup_steps))
  stable = total - cfg.warmup_steps - decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
       optax.constant_schedule(cfg.learning_rate),
       optax.linear_schedule(cfg.learning_rate, end, decay)],
      boundaries=[cfg.warmup_steps, cfg.warmup_steps + stable])


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(cfg)
  if cfg.optimizer == "adafactor":
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adafactor(schedule, multiply_by_parameter_scale=True,
                                       clipping_threshold=1.0, decay_rate=0.8))
  return optax.chain(
      optax.clip_by_global_norm(cfg.grad_clip),
      optax.adamw(schedule, b1=0.9, b2=0.98, weight_decay=cfg.weight_decay))


def loss_fn(params, config: T5Config, inputs, decoder_inputs, targets,
            label_smoothing: float = 0.0, segments: dict | None = None,
            teacher_logits=None, kd_weight: float = 0.0,
            placeholder_mask=None, placeholder_weight: float = 1.0):
  """Token cross-entropy summed over non-pad targets and divided by their
  number; returns (loss, num_tokens).

  `segments`: `Batch.model_kwargs` of a packed batch (segment ids), or None.
  `teacher_logits` [B, T, V]: with `kd_weight` > 0, that share of the loss is
  the cross-entropy against the teacher's softmax (token-level KD).
  `placeholder_mask` [V] bool: positions whose target or argmax is one of its
  pieces count `placeholder_weight` times."""
  logits = T5Model(config=config, params=params).logits(
      inputs, decoder_inputs, **(segments or {}))
  # Cross-entropy against (1 - ls) * one_hot + ls / V, without materialising
  # the [B, T, V] label array: -log p_y and -mean_v log p_v = lse - mean(logits).
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [B, T]
  if label_smoothing:
    uniform = jax.nn.logsumexp(logits, axis=-1) - logits.mean(axis=-1)
    xent = (1.0 - label_smoothing) * xent + label_smoothing * uniform
  if teacher_logits is not None and kd_weight:
    soft = optax.softmax_cross_entropy(logits, jax.nn.softmax(teacher_logits, axis=-1))
    xent = (1.0 - kd_weight) * xent + kd_weight * soft
  mask = (targets > 0).astype(jnp.float32)
  ntok = jnp.maximum(mask.sum(), 1.0)
  weights = mask
  if placeholder_mask is not None:
    is_placeholder = placeholder_mask[targets] | placeholder_mask[jnp.argmax(logits, axis=-1)]
    weights = mask * jnp.where(is_placeholder, placeholder_weight, 1.0)
  return (xent * weights).sum() / ntok, ntok


def make_train_step(config: T5Config, optimizer, label_smoothing: float,
                    teacher_config: T5Config | None = None, kd_weight: float = 0.0,
                    placeholder_mask=None, placeholder_weight: float = 1.0):
  """The jitted step; with `teacher_config`, it takes the teacher's parameters
  as its last argument and distills from them (`loss_fn`'s kd_weight);
  `placeholder_mask` / `placeholder_weight` as in `loss_fn`."""
  if placeholder_mask is not None:
    placeholder_mask = jnp.asarray(placeholder_mask, bool)
  def train_step(state: TrainState, inputs, decoder_inputs, targets, segments=None,
                 teacher_params=None):
    teacher_logits = None
    if teacher_config is not None:
      teacher_logits = jax.lax.stop_gradient(
          T5Model(config=teacher_config, params=teacher_params).logits(
              inputs, decoder_inputs, **(segments or {})))
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, config, inputs, decoder_inputs, targets, label_smoothing,
        segments, teacher_logits, kd_weight, placeholder_mask, placeholder_weight)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), loss
  return jax.jit(train_step, donate_argnums=0)


def make_eval_step(config: T5Config):
  @jax.jit
  def eval_step(params, inputs, decoder_inputs, targets):
    loss, ntok = loss_fn(params, config, inputs, decoder_inputs, targets)
    return loss * ntok, ntok
  return eval_step


# ----------------------------------------------------------------- checkpoints
def _ckpt_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, f"checkpoint_{step}.msgpack")


def latest_checkpoint(workdir: str) -> str | None:
  if not os.path.isdir(workdir):
    return None
  steps = []
  for name in os.listdir(workdir):
    if name.startswith("checkpoint_") and name.endswith(".msgpack"):
      try:
        steps.append(int(name[len("checkpoint_"):-len(".msgpack")]))
      except ValueError:
        continue
  return _ckpt_path(workdir, max(steps)) if steps else None


def save_checkpoint(workdir: str, state: TrainState, keep: int = 2) -> str:
  """Atomic write (temp file + rename): an interrupted save never corrupts."""
  os.makedirs(workdir, exist_ok=True)
  step = int(state.step)
  path = _ckpt_path(workdir, step)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(serialization.to_bytes(jax.device_get(state)))
  os.replace(tmp, path)
  old = sorted((p for p in os.listdir(workdir)
                if p.startswith("checkpoint_") and p.endswith(".msgpack")),
               key=lambda p: int(p[len("checkpoint_"):-len(".msgpack")]))
  for p in old[:-keep]:
    os.remove(os.path.join(workdir, p))
  return path


def restore_checkpoint(path: str, template: TrainState) -> TrainState:
  try:
    with open(path, "rb") as f:
      return serialization.from_bytes(template, f.read())
  except Exception as e:  # msgpack raises several types for truncated files
    raise ValueError(
        f"Training checkpoint {path} is corrupt, or does not match this model config "
        f"or TrainConfig.optimizer (the optimizer state differs between 'adamw' and "
        f"'adafactor') ({type(e).__name__}: {e}). Delete it to restart from the previous "
        "checkpoint, or point workdir elsewhere.") from e


# --------------------------------------------------------------------- training
def evaluate(params, config: T5Config, eval_step, batches: Sequence[Batch]) -> float:
  total, count = 0.0, 0.0
  for b in batches:
    s, n = eval_step(params, b.inputs, b.decoder_inputs, b.targets)
    total += float(s)
    count += float(n)
  return total / max(count, 1.0)


def train(model_config: T5Config,
          train_examples: Sequence[Example],
          valid_examples: Sequence[Example],
          cfg: TrainConfig = TrainConfig(),
          workdir: str | None = None,
          bleu_fn: Callable[[Any], float] | None = None,
          progress: bool = True,
          init_params: Any = None,
          teacher: T5Model | None = None,
          placeholder_mask: np.ndarray | None = None) -> tuple[T5Model, dict]:
  """Trains a T5 from scratch (or resumes from `workdir`).

  Args:
    init_params: optional starting parameters for `model_config` (e.g. a
      smaller trained model grown with training/growth.py) instead of a random
      init; a checkpoint in `workdir` still takes precedence (resumption).
    bleu_fn: optional `bleu_fn(model) -> float`, called at each evaluation
      (greedy BLEU on validation; see training/recipes.py).
    teacher: a model with the same vocabulary to distill from at token level
      (`cfg.kd_weight` > 0 is required with it, and it requires it).
    placeholder_mask: bool [vocab_size], the placeholder pieces
      (`vocab.placeholder_piece_mask`); required when
      `cfg.placeholder_weight` != 1.
  Returns:
    (trained model, history dict with losses and evaluations).
  """
  from tqdm.auto import tqdm

  if (teacher is not None) != (cfg.kd_weight > 0):
    raise ValueError(f"kd_weight={cfg.kd_weight} with teacher={'set' if teacher else None}: "
                     "token-level distillation needs both a teacher and kd_weight > 0")
  if teacher is not None and teacher.config.vocab_size != model_config.vocab_size:
    raise ValueError(f"teacher vocab_size {teacher.config.vocab_size} != student "
                     f"{model_config.vocab_size}: distillation needs one vocabulary")
  if cfg.placeholder_weight != 1.0:
    if placeholder_mask is None:
      raise ValueError(f"placeholder_weight={cfg.placeholder_weight} needs "
                       "train(..., placeholder_mask=vocab.placeholder_piece_mask(vocab)).")
    if np.shape(placeholder_mask) != (model_config.vocab_size,):
      raise ValueError(f"placeholder_mask has shape {np.shape(placeholder_mask)}; the model's "
                       f"vocabulary needs ({model_config.vocab_size},)")
  else:
    placeholder_mask = None
  optimizer = make_optimizer(cfg)
  rng = jax.random.PRNGKey(cfg.seed)
  if init_params is None:
    model = T5Model.init(model_config, rng)
  else:  # shapes only: no random init to throw away
    want = jax.eval_shape(lambda: T5Model.init(model_config, rng).params)
    if (jax.tree_util.tree_map(jnp.shape, want)
        != jax.tree_util.tree_map(jnp.shape, init_params)):
      raise ValueError("init_params do not match model_config's parameter shapes;"
                       " grow or convert the initial model to this config first.")
    model = T5Model(config=model_config,
                    params=jax.tree_util.tree_map(jnp.asarray, init_params))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=model.params,
                     opt_state=optimizer.init(model.params))
  history: dict[str, list] = {"train_loss": [], "eval": []}
  if workdir:
    ckpt = latest_checkpoint(workdir)
    if ckpt:
      state = restore_checkpoint(ckpt, state)
      hist_path = os.path.join(workdir, "history.json")
      if os.path.exists(hist_path):
        with open(hist_path) as f:
          history = json.load(f)
      logger.info("Resumed from %s at step %d", ckpt, int(state.step))

  batcher = (PackedBatcher if cfg.pack else BucketedBatcher)(
      train_examples, cfg.tokens_per_batch, cfg.max_len, cfg.seed)
  valid_batcher = BucketedBatcher(valid_examples, cfg.tokens_per_batch, cfg.max_len, 0)
  valid_batches = [valid_batcher.make_batch(idx) for idx in valid_batcher._epoch(0)]
  train_step = make_train_step(model_config, optimizer, cfg.label_smoothing,
                               teacher.config if teacher is not None else None,
                               cfg.kd_weight, placeholder_mask, cfg.placeholder_weight)
  teacher_params = teacher.params if teacher is not None else None
  eval_step = make_eval_step(model_config)

  start = int(state.step)
  # A resumed run may extend num_steps (the schedule is then stretched from
  # `start` on): record every phase so the recipe stays reproducible.
  phases = history.setdefault("phases", [])
  if start < cfg.num_steps:
    phases.append({"start_step": start, "num_steps": cfg.num_steps})
  stream = batcher.batches(start + cfg.data_offset_steps)
  bar = tqdm(total=cfg.num_steps, initial=start, disable=not progress,
             desc=f"train {model_config.name}", dynamic_ncols=True)
  t0, losses = time.time(), []
  base_wall = float(history.get("wall_time_s", 0.0))

  def do_eval(step):
    m = T5Model(config=model_config, params=state.params)
    entry = {"step": step, "valid_loss": evaluate(state.params, model_config,
                                                  eval_step, valid_batches)}
    if bleu_fn is not None:
      entry["valid_bleu"] = float(bleu_fn(m))
    history["eval"].append(entry)
    bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in entry.items()
                                           if k != "step"))

  for step in range(start, cfg.num_steps):
    batch = next(stream)
    state, loss = train_step(state, batch.inputs, batch.decoder_inputs, batch.targets,
                             batch.model_kwargs or None, teacher_params)
    losses.append(loss)
    if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.num_steps:
      mean = float(np.mean(jax.device_get(losses)))
      losses = []
      history["train_loss"].append([step + 1, mean])
      bar.set_postfix(loss=f"{mean:.3f}")
    bar.update(1)
    done = step + 1 == cfg.num_steps
    if (step + 1) % cfg.eval_every == 0 or done:
      do_eval(step + 1)
    if workdir and ((step + 1) % cfg.checkpoint_every == 0 or done):
      save_checkpoint(workdir, state, cfg.keep_checkpoints)
      history["wall_time_s"] = base_wall + (time.time() - t0)
      with open(os.path.join(workdir, "history.json"), "w") as f:
        json.dump(history, f)
  bar.close()
  history["wall_time_s"] = base_wall + (time.time() - t0)
  return T5Model(config=model_config, params=jax.device_get(state.params)), history
