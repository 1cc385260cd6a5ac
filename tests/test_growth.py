"""Depth growth (training/growth.py) keeps the function; the trainer starts from it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.models.t5 import PRESETS, T5Model
from spec_cascade_jax.training import growth, trainer


def test_layer_map_interleaves_copies_after_their_source():
  assert growth.layer_map(3, 6) == [(0, False), (0, True), (1, False), (1, True),
                                    (2, False), (2, True)]
  assert growth.layer_map(2, 3) == [(0, False), (0, True), (1, False)]
  assert growth.layer_map(2, 2) == [(0, False), (1, False)]
  with pytest.raises(ValueError, match="only adds layers"):
    growth.layer_map(3, 2)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny-v1.0", "tiny-v1.1"])
def test_deepen_computes_the_same_function(preset):
  cfg = PRESETS[preset]
  model = T5Model.init(cfg, jax.random.PRNGKey(3))
  # Non-zero everywhere, so a copy that were not an identity would show.
  grown = growth.deepen(model, num_layers=cfg.num_layers + 1,
                        num_decoder_layers=2 * cfg.n_decoder_layers)
  assert grown.config.num_layers == cfg.num_layers + 1
  assert grown.config.n_decoder_layers == 2 * cfg.n_decoder_layers
  x = jnp.array([[5, 9, 11, 7, 1], [4, 6, 1, 0, 0]])
  y = jnp.array([[0, 3, 8, 12], [0, 13, 2, 0]])
  np.testing.assert_allclose(np.asarray(grown.logits(x, y)), np.asarray(model.logits(x, y)),
                             atol=1e-5)
  dec = grown.params["decoder"]
  # Copies: same input projections as their source, zero output projections.
  np.testing.assert_array_equal(dec["layers_1"]["self_attention"]["query"]["kernel"],
                                dec["layers_0"]["self_attention"]["query"]["kernel"])
  assert not np.any(dec["layers_1"]["self_attention"]["out"]["kernel"])
  assert not np.any(dec["layers_1"]["mlp"]["wo"]["kernel"])
  assert np.any(dec["layers_0"]["mlp"]["wo"]["kernel"])


def test_check_growable_names_the_mismatch():
  cfg = PRESETS["tiny-v1.0"]
  growth.check_growable(cfg, cfg.replace(num_decoder_layers=cfg.n_decoder_layers + 2))
  with pytest.raises(ValueError, match="d_model"):
    growth.check_growable(cfg, cfg.replace(d_model=cfg.d_model * 2))
  with pytest.raises(ValueError, match="fewer layers"):
    growth.check_growable(cfg.replace(num_layers=3), cfg.replace(num_layers=1))


def _copy_task(n, vocab=64, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    x = [int(t) for t in rng.integers(3, vocab, size=int(rng.integers(2, 10)))]
    out.append((x + [1], x + [1]))
  return out


@pytest.mark.slow
def test_training_starts_from_init_params(tmp_path):
  cfg = PRESETS["tiny-v1.0"]
  exs = _copy_task(160)
  tc = trainer.TrainConfig(num_steps=40, learning_rate=3e-3, warmup_steps=5,
                           tokens_per_batch=128, max_len=16, eval_every=40,
                           checkpoint_every=1000, log_every=10)
  small, hist = trainer.train(cfg, exs[:128], exs[128:], tc, progress=False)
  big_cfg = cfg.replace(num_decoder_layers=2 * cfg.n_decoder_layers)
  grown = growth.deepen(small, num_decoder_layers=big_cfg.n_decoder_layers)
  # A learning rate of ~0 keeps the start: the loss is the small model's, not
  # a random init's.
  frozen = trainer.TrainConfig(num_steps=2, learning_rate=1e-12, warmup_steps=1,
                               tokens_per_batch=128, max_len=16, eval_every=2,
                               checkpoint_every=1000, log_every=1)
  _, h_grown = trainer.train(big_cfg, exs[:128], exs[128:], frozen, progress=False,
                             init_params=grown.params)
  _, h_random = trainer.train(big_cfg, exs[:128], exs[128:], frozen, progress=False)
  start = hist["eval"][-1]["valid_loss"]
  assert h_grown["eval"][-1]["valid_loss"] == pytest.approx(start, abs=1e-3)
  assert h_random["eval"][-1]["valid_loss"] > start + 0.5
  with pytest.raises(ValueError, match="init_params do not match"):
    trainer.train(big_cfg, exs[:128], exs[128:], frozen, progress=False,
                  init_params=small.params)


def test_recipe_start_grows_a_bundled_model_and_keeps_its_recipe(tmp_path):
  from spec_cascade_jax.models.loading import load_model
  from spec_cascade_jax.training.recipes import _initial_params
  small = load_model("demo-drafter")
  target = small.config.replace(num_decoder_layers=small.config.n_decoder_layers + 1)
  params, recipe, fingerprint = _initial_params("demo-drafter", target, str(tmp_path))
  assert recipe is not None and recipe["model_config"]["name"] == "demo-drafter"
  from spec_cascade_jax.training.distill import params_fingerprint
  assert fingerprint == params_fingerprint(small.params) != params_fingerprint(params)
  x, y = jnp.array([[5, 9, 11, 1]]), jnp.array([[0, 3, 8]])
  np.testing.assert_allclose(np.asarray(T5Model(config=target, params=params).logits(x, y)),
                             np.asarray(small.logits(x, y)), atol=1e-5)
  with pytest.raises(ValueError, match="d_model"):
    _initial_params("demo-drafter", target.replace(d_model=128), str(tmp_path))
  with pytest.raises(ValueError, match="init_sha256"):
    _initial_params("demo-drafter", target, str(tmp_path), expected_sha256="0" * 64)


def test_a_start_in_git_history_is_written_out_and_its_fingerprint_checked(tmp_path):
  """'git:<commit>:<path>' names a model that left the tree: `materialize`
  writes it out of the history with `git show`, and the recipe's
  init_sha256 catches another model in its place."""
  import subprocess
  from spec_cascade_jax.models.checkpoint import save_model
  from spec_cascade_jax.models.loading import load_model
  from spec_cascade_jax.training import lineage
  from spec_cascade_jax.training.distill import params_fingerprint
  from spec_cascade_jax.training.recipes import _initial_params
  repo = tmp_path / "repo"
  model = T5Model.init(PRESETS["tiny-v1.0"], jax.random.PRNGKey(0))
  save_model(model, str(repo / "models" / "old"))
  git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
  subprocess.run(["git", "init", "-q", str(repo)], check=True)
  subprocess.run(git + ["add", "."], check=True)
  subprocess.run(git + ["commit", "-qm", "old"], check=True)
  commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
  subprocess.run(git + ["rm", "-rq", "models"], check=True)   # the model leaves the tree
  ref = f"git:{commit}:models/old"
  assert lineage.parse_git_ref(ref) == (commit, "models/old")
  out = lineage.materialize(ref, str(tmp_path / "start"), repo=str(repo))
  fingerprint = params_fingerprint(model.params)
  assert params_fingerprint(load_model(out).params) == fingerprint
  assert lineage.start_record(ref, fingerprint)["get"] == (
      f"mkdir DIR && git show {commit}:models/old/config.json > DIR/config.json"
      f" && git show {commit}:models/old/params.msgpack > DIR/params.msgpack")
  _, _, got = _initial_params(out, PRESETS["tiny-v1.0"], str(tmp_path), fingerprint)
  assert got == fingerprint
  with pytest.raises(ValueError, match="init_sha256"):
    _initial_params(out, PRESETS["tiny-v1.0"], str(tmp_path), "f" * 64)
  with pytest.raises(FileNotFoundError, match="git show"):
    lineage.materialize(f"git:{commit}:models/missing", str(tmp_path / "s2"), repo=str(repo))
  with pytest.raises(ValueError, match="git:<commit>:<path"):
    lineage.parse_git_ref("git:nocolon")
