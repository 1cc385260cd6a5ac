"""Our own model format (save_model / load_saved_model) and load_model dispatch."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from spec_cascade_jax.models import checkpoint as ck
from spec_cascade_jax.models import loading
from spec_cascade_jax.models.lm import MODEL_TYPES, LMModel
from spec_cascade_jax.models.t5 import PRESETS, T5Model
from spec_cascade_jax.models.t5 import hf
from spec_cascade_jax.models.t5 import t5x_checkpoint as tc
from spec_cascade_jax.testing import tiny_lm_pair


@pytest.fixture(scope="module")
def model():
  return T5Model.init(PRESETS["tiny-v1.1"], jax.random.PRNGKey(1))


def _flat(m):
  return {p: np.asarray(x) for p, x in tc.flatten_params(m.params).items()}


def _assert_same_model(got, want):
  assert got.config == want.config
  a, b = _flat(got), _flat(want)
  assert sorted(a) == sorted(b)
  for p in b:
    assert a[p].dtype == np.float32, p
    np.testing.assert_array_equal(a[p], b[p], err_msg=p)


def test_round_trip_params_config_and_logits(tmp_path, model):
  d = str(tmp_path / "m")
  assert ck.save_model(model, d) == d
  assert sorted(os.listdir(d)) == ["config.json", "params.msgpack"]   # no temp files
  cfg = json.loads((tmp_path / "m" / "config.json").read_text())
  assert cfg["format"] == "spec_cascade_jax" and cfg["format_version"] == 1
  assert cfg["d_ff"] == model.config.d_ff
  loaded = ck.load_saved_model(d)
  _assert_same_model(loaded, model)
  inp = np.array([[4, 8, 15, 1]], np.int32)
  dec = np.array([[0, 16, 23]], np.int32)
  np.testing.assert_array_equal(np.asarray(loaded.logits(inp, dec)),
                                np.asarray(model.logits(inp, dec)))
  # Saving again over the same directory replaces it atomically.
  ck.save_model(loaded, d)
  assert sorted(os.listdir(d)) == ["config.json", "params.msgpack"]
  bf = ck.load_saved_model(d, dtype="bfloat16")
  assert bf.config.dtype == "bfloat16" and _flat(bf)["token_embedder/embedding"].dtype == np.float32


def test_own_format_errors(tmp_path, model):
  d = tmp_path / "m"
  ck.save_model(model, str(d))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    ck.load_saved_model(str(tmp_path / "nope"))
  blob = (d / "params.msgpack").read_bytes()
  (d / "params.msgpack").write_bytes(blob[: len(blob) - 100])
  with pytest.raises(ValueError, match=r"params\.msgpack.*truncated"):
    ck.load_saved_model(str(d))
  os.remove(d / "params.msgpack")
  with pytest.raises(FileNotFoundError, match=r"params\.msgpack.*missing"):
    ck.load_saved_model(str(d))
  # config.json that disagrees with the weights: the parameter is named.
  ck.save_model(model, str(d))
  cfg = json.loads((d / "config.json").read_text())
  (d / "config.json").write_text(json.dumps(dict(cfg, d_kv=16)))
  with pytest.raises(ValueError, match=r"'encoder/layers_0/attention/query/kernel' has"
                                       r" shape \(32, 32\).*expects \(32, 64\)"):
    ck.load_saved_model(str(d))
  (d / "config.json").write_text(json.dumps(cfg)[:40])
  with pytest.raises(ValueError, match="not valid JSON"):
    ck.load_saved_model(str(d))
  os.remove(d / "config.json")
  with pytest.raises(FileNotFoundError, match=r"config\.json.*missing"):
    ck.load_saved_model(str(d))


def test_load_model_dispatch(tmp_path, model, monkeypatch):
  # 1. Bundled names come from assets/models/<name>/ in our format.
  assets = tmp_path / "assets"
  ck.save_model(model, str(assets / "demo-drafter"))
  (assets / "not-a-model").mkdir()
  monkeypatch.setattr(loading, "ASSETS_DIR", str(assets))
  assert loading.bundled_models() == ["demo-drafter"]
  _assert_same_model(loading.load_model("demo-drafter"), model)
  with pytest.raises(FileNotFoundError, match=r"'demo-verifierx'.*bundled:"
                                              r" \['demo-drafter'\].*path"):
    loading.load_model("demo-verifierx")
  # 2. Our format by path (directory or a file inside it).
  _assert_same_model(loading.load_model(str(assets / "demo-drafter")), model)
  _assert_same_model(loading.load_model(str(assets / "demo-drafter" / "config.json")), model)
  # 4. t5x: msgpack file, checkpoint_<step> dir, parent dir; Orbax.
  path = tc.save_t5x_checkpoint(model, str(tmp_path / "t5x"), 5)
  for p in (os.path.join(path, "checkpoint"), path, str(tmp_path / "t5x")):
    got = loading.load_model(p)
    assert got.config.replace(name="x", relative_attention_max_distance=16) == \
        model.config.replace(name="x")
    np.testing.assert_array_equal(_flat(got)["decoder/logits_dense/kernel"],
                                  _flat(model)["decoder/logits_dense/kernel"])
  orbax_path = tc.save_t5x_checkpoint(model, str(tmp_path / "orbax"), 3, format="orbax")
  np.testing.assert_array_equal(_flat(loading.load_model(orbax_path))["encoder/layers_1/"
                                                                      "mlp/wo/kernel"],
                                _flat(model)["encoder/layers_1/mlp/wo/kernel"])
  # 5. Anything else: what was found and what is expected.
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "notes.txt").write_text("hi")
  with pytest.raises(FileNotFoundError, match=r"notes\.txt.*Hugging Face.*t5x"):
    loading.load_model(str(tmp_path / "junk"))
  (tmp_path / "hf_noweights").mkdir()
  (tmp_path / "hf_noweights" / "config.json").write_text(
      json.dumps(model.config.to_hf_dict()))
  with pytest.raises(FileNotFoundError, match="no weights"):
    loading.load_model(str(tmp_path / "hf_noweights"))


def test_load_model_hugging_face_directory(tmp_path, model):
  # 3. A Hugging Face directory goes through models/t5/hf.py (safetensors, no torch).
  d = str(tmp_path / "hf")
  hf.save_hf_t5(model, d)
  assert os.path.isfile(os.path.join(d, "config.json"))
  got = loading.load_model(d)
  a, b = _flat(got), _flat(model)
  assert sorted(a) == sorted(b)
  for p in b:
    np.testing.assert_allclose(a[p], b[p], rtol=0, atol=1e-7, err_msg=p)
  # Our loader must not mistake HF's config.json for ours, and vice versa.
  assert not ck.is_saved_model(d)
  with pytest.raises(ValueError, match="not our format"):
    ck.load_saved_model(d)


def test_bfloat16_storage_halves_the_file_and_loads_rounded(tmp_path, model):
  f32, b16 = str(tmp_path / "f32"), str(tmp_path / "b16")
  ck.save_model(model, f32)
  ck.save_model(model, b16, param_dtype="bfloat16")
  size = lambda d: os.path.getsize(os.path.join(d, "params.msgpack"))
  assert size(b16) < 0.6 * size(f32)
  with open(os.path.join(b16, "config.json")) as f:
    assert json.load(f)["param_storage_dtype"] == "bfloat16"
  got = ck.load_saved_model(b16)
  _assert_same_model(got, ck.round_params(model, "bfloat16"))
  diff = max(float(np.abs(a - b).max()) for a, b in zip(_flat(got).values(),
                                                        _flat(model).values()))
  assert 0 < diff < 0.05      # really rounded, but only by bfloat16's precision
  with pytest.raises(ValueError, match="param_dtype"):
    ck.save_model(model, str(tmp_path / "x"), param_dtype="float16")


def test_saved_files_follow_the_umask(tmp_path, model):
  """Files are written through mkstemp (0600) but must end up shareable."""
  d = str(tmp_path / "m")
  old = os.umask(0o022)
  try:
    ck.save_model(model, d)
  finally:
    os.umask(old)
  for f in ("config.json", "params.msgpack"):
    assert os.stat(os.path.join(d, f)).st_mode & 0o777 == 0o644, f


# ------------------------------------------------------------------ families


def test_config_json_records_the_family(tmp_path, model):
  d = tmp_path / "m"
  ck.save_model(model, str(d))
  cfg = json.loads((d / "config.json").read_text())
  assert cfg["family"] == "t5"
  # Without the key (files written before it existed) the file reads as T5.
  del cfg["family"]
  (d / "config.json").write_text(json.dumps(cfg))
  _assert_same_model(ck.load_saved_model(str(d)), model)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_lm_round_trip_through_our_format(tmp_path, model_type):
  _, lm = tiny_lm_pair(model_type=model_type, init_std=0.5)
  d = str(tmp_path / "lm")
  ck.save_model(lm, d)
  cfg = json.loads((tmp_path / "lm" / "config.json").read_text())
  assert cfg["family"] == "lm" and cfg["model_type"] == model_type
  for got in (ck.load_saved_model(d), loading.load_model(d)):
    assert isinstance(got, LMModel)
    _assert_same_model(got, lm)
    ids = np.array([[5, 9, 17, 3], [7, 2, 0, 0]], np.int32)
    np.testing.assert_array_equal(np.asarray(got.logits(ids)), np.asarray(lm.logits(ids)))
  assert ck.load_saved_model(d, dtype="bfloat16").config.dtype == "bfloat16"
  # Weights that do not fit the config: the parameter is named.
  cfg["num_layers"], cfg["layer_types"] = 1, cfg["layer_types"][:1]
  (tmp_path / "lm" / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match=r"'layers_1/.*' is unexpected"):
    ck.load_saved_model(d)


def test_unknown_family_is_a_clear_error(tmp_path, model):
  d = tmp_path / "m"
  ck.save_model(model, str(d))
  cfg = json.loads((d / "config.json").read_text())
  (d / "config.json").write_text(json.dumps(dict(cfg, family="rnn")))
  for load in (ck.load_saved_model, loading.load_model):
    with pytest.raises(ValueError, match=r"config\.json.*'rnn'.*valid families:"
                                         r" \['lm', 't5'\]"):
      load(str(d))


def test_save_model_needs_a_family_model(tmp_path):
  from spec_cascade_jax.testing import BigramModel
  toy = BigramModel(logits=np.zeros((4, 4), np.float32))
  with pytest.raises(TypeError, match=r"families \['lm', 't5'\].*BigramModel"):
    ck.save_model(toy, str(tmp_path / "toy"))
  assert not os.path.exists(tmp_path / "toy")
