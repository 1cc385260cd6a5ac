"""t5x checkpoint import: msgpack + TensorStore/zarr, Orbax, config inference, errors."""

from __future__ import annotations

import os
import shutil

import jax
import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization

from spec_cascade_jax.models.t5 import PRESETS
from spec_cascade_jax.models.t5 import t5x_checkpoint as tc

CONFIGS = ["tiny-v1.0", "tiny-v1.1"]


def _params(config, seed=0):
  """Random float32 parameters with t5x names: {'a/b/kernel': [..]}."""
  rng = np.random.default_rng(seed)
  return {p: (rng.standard_normal(s) * 0.3).astype(np.float32)
          for p, s in tc.expected_param_shapes(config).items()}


def _mixed_precision(flat):
  """Stores kernels in bfloat16 as t5x often does; returns (stored, float32 view)."""
  stored = {p: x.astype(ml_dtypes.bfloat16) if p.endswith("kernel") else x
            for p, x in flat.items()}
  return stored, {p: np.asarray(x, np.float32) for p, x in stored.items()}


def _write_t5x_by_hand(ckpt_dir, flat, *, inline_below=1024, old_spec=False,
                       wrap_optimizer=True):
  """Writes a checkpoint the way t5x's Checkpointer.save does, without our writer.

  Arrays of at least `inline_below` elements go to `<ckpt_dir>/target.<a>.<b>...`
  as gzip zarr and appear in the msgpack as their TensorStore spec with a
  path relative to the checkpoint directory; the rest are inline.
  `old_spec`: tensorstore<0.1.14 specs ("path" beside "kvstore").
  """
  os.makedirs(ckpt_dir, exist_ok=True)
  target = {}
  for p, x in flat.items():
    name = "target." + p.replace("/", ".")
    if x.size >= inline_below:
      dt = "bfloat16" if x.dtype == ml_dtypes.bfloat16 else x.dtype.str
      meta = {"compressor": {"id": "gzip"}, "shape": list(x.shape),
              "chunks": list(x.shape), "dtype": dt}
      ts.open({"driver": "zarr", "kvstore": {"driver": "file",
                                             "path": os.path.join(ckpt_dir, name)},
               "metadata": meta}, create=True).result().write(x).result()
      if old_spec:
        leaf = {"driver": "zarr", "kvstore": {"driver": "file"}, "path": name,
                "metadata": meta}
      else:
        leaf = {"driver": "zarr", "dtype": x.dtype.name,
                "kvstore": {"driver": "file", "path": name}, "metadata": meta}
    else:
      leaf = x
    node = target
    *parents, last = p.split("/")
    for k in parents:
      node = node.setdefault(k, {})
    node[last] = leaf
  state = {"target": target, "state": {"step": np.int32(7), "param_states": {}}}
  contents = {"version": 3, "optimizer": state} if wrap_optimizer else state
  with open(os.path.join(ckpt_dir, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(contents))


def _assert_params_equal(model, flat):
  got = tc.flatten_params(model.params)
  assert sorted(got) == sorted(flat)
  for p, x in flat.items():
    assert got[p].dtype == np.float32, p
    np.testing.assert_array_equal(np.asarray(got[p]), x, err_msg=p)


def _ids(config):
  inp = np.array([[5, 9, 3, 1, 0], [7, 2, 1, 0, 0]], np.int32)
  dec = np.array([[0, 4, 8, 2], [0, 6, 6, 1]], np.int32)
  return inp % config.vocab_size, dec % config.vocab_size


@pytest.mark.slow
def test_expected_shapes_match_t5model_init():
  from spec_cascade_jax.models.t5 import T5Model
  for name in CONFIGS:
    cfg = PRESETS[name]
    model = T5Model.init(cfg, jax.random.PRNGKey(0))
    got = {p: tuple(x.shape) for p, x in tc.flatten_params(model.params).items()}
    assert got == tc.expected_param_shapes(cfg), name


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_hand_written_t5x_checkpoint_loads_same_params_and_logits(tmp_path, name):
  from spec_cascade_jax.models.t5 import T5Model
  cfg = PRESETS[name]
  stored, as_f32 = _mixed_precision(_params(cfg))
  ckpt = tmp_path / "model" / "checkpoint_7"
  _write_t5x_by_hand(str(ckpt), stored)
  # The layout really mixes inline arrays and TensorStore arrays.
  raw = serialization.msgpack_restore((ckpt / "checkpoint").read_bytes())
  target = raw["optimizer"]["target"]
  assert isinstance(target["encoder"]["encoder_norm"]["scale"], np.ndarray)
  assert target["encoder"]["layers_0"]["attention"]["query"]["kernel"]["driver"] == "zarr"
  assert (ckpt / "target.encoder.layers_0.attention.query.kernel").is_dir()

  model = tc.load_t5x_checkpoint(str(ckpt), relative_attention_max_distance=16)
  assert model.config.replace(name=cfg.name) == cfg          # inferred from shapes
  _assert_params_equal(model, as_f32)
  ref = T5Model(config=cfg, params=tc.unflatten_params(as_f32))
  inp, dec = _ids(cfg)
  np.testing.assert_allclose(np.asarray(model.logits(inp, dec)),
                             np.asarray(ref.logits(inp, dec)), rtol=1e-6, atol=1e-6)


def test_old_spec_unwrapped_and_3d_attention_kernels(tmp_path):
  """tensorstore<0.1.14 specs, pre-VERSION checkpoints, [D, H, Dkv] kernels."""
  cfg = PRESETS["tiny-v1.1"]
  flat = _params(cfg, seed=3)
  h, dkv = cfg.num_heads, cfg.d_kv
  stored = {}
  for p, x in flat.items():
    if "attention/" in p:
      x = x.reshape(h, dkv, -1) if "/out/" in p else x.reshape(x.shape[0], h, dkv)
    stored[p] = x
  _write_t5x_by_hand(str(tmp_path / "checkpoint_1"), stored, old_spec=True,
                     wrap_optimizer=False)
  model = tc.load_t5x_checkpoint(str(tmp_path / "checkpoint_1" / "checkpoint"), config=cfg)
  _assert_params_equal(model, flat)


@pytest.mark.parametrize("fmt", ["msgpack", "orbax"])
def test_save_load_round_trip_and_highest_step(tmp_path, fmt):
  cfg = PRESETS["tiny-v1.0"]
  old, new = _params(cfg, seed=1), _params(cfg, seed=2)
  tc.save_t5x_checkpoint(old, str(tmp_path), 10, format=fmt)
  path = tc.save_t5x_checkpoint(tc.unflatten_params(new), str(tmp_path), 200, format=fmt,
                                dtype="bfloat16")
  assert path == os.path.join(str(tmp_path), "checkpoint_200")
  assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
  if fmt == "orbax":
    assert (tmp_path / "checkpoint_200" / "_METADATA").exists()
    # A file inside an Orbax directory stands for the directory.
    _assert_params_equal(tc.load_t5x_checkpoint(str(tmp_path / "checkpoint_10" / "_METADATA")),
                         old)
  else:
    assert (tmp_path / "checkpoint_200" / "checkpoint").is_file()
    assert (tmp_path / "checkpoint_200" / "target.token_embedder.embedding").is_dir()
    blob = (tmp_path / "checkpoint_200" / "checkpoint").read_bytes()
    target = serialization.msgpack_restore(blob)["optimizer"]["target"]
    assert isinstance(target["decoder"]["decoder_norm"]["scale"], np.ndarray)   # inline
    assert target["token_embedder"]["embedding"]["driver"] == "zarr"            # TensorStore
    # Relative paths only: the checkpoint can be moved or copied elsewhere.
    assert str(tmp_path).encode() not in blob
  # An unfinished save (t5x's temp name) must be ignored.
  os.makedirs(tmp_path / "checkpoint_999.tmp-123")
  rounded = {p: x.astype(ml_dtypes.bfloat16).astype(np.float32) for p, x in new.items()}
  _assert_params_equal(tc.load_t5x_checkpoint(str(tmp_path), config=cfg), rounded)
  _assert_params_equal(tc.load_t5x_checkpoint(str(tmp_path / "checkpoint_10")), old)
  with pytest.raises(FileExistsError, match="overwrite=True"):
    tc.save_t5x_checkpoint(old, str(tmp_path), 10, format=fmt)


def test_orbax_checkpoint_manager_layout(tmp_path):
  """<model_dir>/<step>/<item>/ as orbax.checkpoint.CheckpointManager writes it."""
  import orbax.checkpoint as ocp
  cfg = PRESETS["tiny-v1.0"]
  for step, seed in ((3, 4), (12, 5)):
    item = tmp_path / "mgr" / str(step) / "default"
    ocp.PyTreeCheckpointer().save(str(item), {"target": tc.unflatten_params(_params(cfg, seed)),
                                              "state": {"step": np.int32(step)}})
  want = _params(cfg, seed=5)    # the highest step's parameters
  _assert_params_equal(tc.load_t5x_checkpoint(str(tmp_path / "mgr")), want)
  _assert_params_equal(tc.load_t5x_checkpoint(str(tmp_path / "mgr" / "12")), want)


@pytest.mark.parametrize("preset", ["t5-small", "t5-xl", "t5.1.1-small", "t5.1.1-xxl",
                                    "tiny-v1.1"])
def test_infer_config_from_shapes(preset):
  cfg = PRESETS[preset]
  inferred = tc.infer_config(tc.expected_param_shapes(cfg),
                             relative_attention_max_distance=cfg.relative_attention_max_distance)
  assert inferred.replace(name=cfg.name) == cfg


def test_errors_name_the_problem(tmp_path):
  cfg = PRESETS["tiny-v1.1"]
  flat = _params(cfg)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    tc.load_t5x_checkpoint(str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="not a t5x checkpoint"):
    tc.load_t5x_checkpoint(str(tmp_path / "empty"))

  good = tmp_path / "good" / "checkpoint_1"
  _write_t5x_by_hand(str(good), flat)
  # Truncated msgpack.
  bad = tmp_path / "trunc" / "checkpoint_1"
  shutil.copytree(good, bad)
  blob = (bad / "checkpoint").read_bytes()
  (bad / "checkpoint").write_bytes(blob[: len(blob) // 2])
  with pytest.raises(ValueError, match="truncated"):
    tc.load_t5x_checkpoint(str(bad))
  # A TensorStore array missing on disk: names the parameter and the fix.
  shutil.rmtree(tmp_path / "trunc")
  shutil.copytree(good, bad)
  shutil.rmtree(bad / "target.decoder.layers_1.mlp.wo.kernel")
  with pytest.raises(FileNotFoundError,
                     match=r"'decoder/layers_1/mlp/wo/kernel'.*copy the whole"):
    tc.load_t5x_checkpoint(str(bad))
  # Shape mismatch against an explicit config names the parameter.
  with pytest.raises(ValueError, match=r"'encoder/layers_0/mlp/wi_0/kernel' has shape"
                                       r" \(32, 48\).*expects \(32, 96\)"):
    tc.load_t5x_checkpoint(str(good), config=cfg.replace(d_ff=96))
  # Missing parameter.
  partial = dict(flat)
  del partial["decoder/layers_2/pre_mlp_layer_norm/scale"]
  _write_t5x_by_hand(str(tmp_path / "partial" / "checkpoint_1"), partial)
  with pytest.raises(ValueError, match="'decoder/layers_2/pre_mlp_layer_norm/scale' is"
                                       " missing"):
    tc.load_t5x_checkpoint(str(tmp_path / "partial"))
  # A checkpoint of some other model: inference says what it needs.
  _write_t5x_by_hand(str(tmp_path / "other" / "checkpoint_1"), {"dense/kernel": flat[
      "decoder/logits_dense/kernel"]})
  with pytest.raises(ValueError, match="token_embedder/embedding.*missing"):
    tc.load_t5x_checkpoint(str(tmp_path / "other"))
