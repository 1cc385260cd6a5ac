"""Hugging Face T5 import/export: parity with transformers' PyTorch T5."""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import torch  # the test extra (setup.py): a missing one is a broken install
import transformers
from safetensors.numpy import load_file, save_file

from spec_cascade_jax.models.t5 import PRESETS
from spec_cascade_jax.models.t5.hf import (
    HFCheckpointError, HFCheckpointNotFoundError, load_hf_t5, save_hf_t5)
from spec_cascade_jax.models.t5.model import T5Model, relative_position_bucket

pytestmark = pytest.mark.slow  # parity with transformers' PyTorch T5 (the fast tier leaves it out)

INPUT_IDS = np.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 2],
                      [23, 24, 25, 26, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
                     np.int32)  # 19 > max_distance 16: far buckets are used
_logits = jax.jit(lambda m, x, y: m.logits(x, y))
_step = jax.jit(lambda m, t, c, p: m.step(t, c, p))

VARIANTS = {
    "v1.0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "v1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


def _hf_config(variant):
  return transformers.T5Config(
      vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_heads=4, num_layers=2,
      num_decoder_layers=3, relative_attention_num_buckets=8,
      relative_attention_max_distance=16, dropout_rate=0.0, decoder_start_token_id=0,
      **VARIANTS[variant])


@pytest.fixture(scope="module", params=list(VARIANTS))
def hf_dir(request, tmp_path_factory):
  """A random T5 that transformers creates and saves itself -> (dir, torch model)."""
  torch.manual_seed(0)
  hf = transformers.T5ForConditionalGeneration(_hf_config(request.param))
  with torch.no_grad():
    # Non-trivial norm scales (HF inits them to 1, which would hide a mix-up).
    for name, p in hf.named_parameters():
      if "layer_norm" in name:
        p.uniform_(0.5, 1.5)
    if request.param == "v1.1":
      # transformers 5 ties lm_head to shared even for T5 1.1; give it its own
      # values so the untied head is really exercised.
      hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight) * 0.2)
  path = str(tmp_path_factory.mktemp(f"hf_{request.param}"))
  hf.save_pretrained(path)
  hf.eval()
  return path, hf


def _hf_logits(hf, input_ids, decoder_ids):
  with torch.no_grad():
    ids = torch.tensor(np.asarray(input_ids), dtype=torch.long)
    return hf(input_ids=ids, attention_mask=(ids != 0).long(),
              decoder_input_ids=torch.tensor(np.asarray(decoder_ids), dtype=torch.long)
              ).logits.numpy()


def _decoder_ids(n=9, seed=0):
  ids = np.random.default_rng(seed).integers(2, 64, size=(2, n)).astype(np.int32)
  ids[:, 0] = 0
  return ids


def _assert_close_rel(ours, theirs, rel=1e-5):
  np.testing.assert_allclose(ours, theirs, rtol=rel, atol=rel * np.abs(theirs).max())


def test_logits_match_transformers(hf_dir):
  path, hf = hf_dir
  model = load_hf_t5(path)
  dec = _decoder_ids()
  _assert_close_rel(np.asarray(_logits(model, INPUT_IDS, dec)),
                    _hf_logits(hf, INPUT_IDS, dec))
  untied = "lm_head.weight" in load_file(os.path.join(path, "model.safetensors"))
  assert untied == (not hf.config.scale_decoder_outputs)  # v1.1 fixture unties it
  assert model.config.tie_word_embeddings == (not untied)
  if untied:
    head = model.params["decoder"]["logits_dense"]["kernel"]
    assert not np.allclose(head, model.params["token_embedder"]["embedding"].T)


def test_greedy_matches_transformers_generate(hf_dir):
  path, hf = hf_dir
  model = load_hf_t5(path)
  n = 12
  ids = torch.tensor(INPUT_IDS, dtype=torch.long)
  hf.generation_config.eos_token_id = None  # random weights: never stop early
  with torch.no_grad():
    want = hf.generate(input_ids=ids, attention_mask=(ids != 0).long(), do_sample=False,
                       num_beams=1, max_new_tokens=n, min_new_tokens=0,
                       # transformers 5.24's decoder KV cache sizes itself by the
                       # encoder's layer count (IndexError with 2 vs 3 layers).
                       use_cache=False).numpy()
  assert want.shape == (2, n + 1) and (want[:, 0] == 0).all()

  cache = jax.jit(lambda m, x: m.init_cache(x, n + 1))(model, INPUT_IDS)
  tok = jnp.zeros((2, 1), jnp.int32)
  got = []
  for t in range(n):
    logits, cache = _step(model, tok, cache, jnp.full((2,), t, jnp.int32))
    tok = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)[:, None]
    got.append(np.asarray(tok[:, 0]))
  np.testing.assert_array_equal(np.stack(got, 1), want[:, 1:])


@pytest.mark.parametrize("preset", ["tiny-v1.0", "tiny-v1.1"])
def test_save_round_trip_loads_in_transformers(preset, tmp_path):
  model = T5Model.init(PRESETS[preset], jax.random.PRNGKey(5))
  save_hf_t5(model, str(tmp_path))
  hf, info = transformers.T5ForConditionalGeneration.from_pretrained(
      str(tmp_path), output_loading_info=True)
  hf.eval()
  assert not info["missing_keys"] and not info["unexpected_keys"]
  assert not info["mismatched_keys"] and not info["error_msgs"]
  dec = _decoder_ids(seed=3)
  _assert_close_rel(_hf_logits(hf, INPUT_IDS, dec),
                    np.asarray(_logits(model, INPUT_IDS, dec)))
  back = load_hf_t5(str(tmp_path))
  assert back.config.tie_word_embeddings == model.config.tie_word_embeddings
  jax.tree_util.tree_map(np.testing.assert_array_equal, back.params, model.params)


def test_sharded_safetensors_and_pytorch_bin(hf_dir, tmp_path):
  path, _ = hf_dir
  ref = load_hf_t5(path)
  tensors = load_file(os.path.join(path, "model.safetensors"))
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[::2],
            "model-00002-of-00002.safetensors": names[1::2]}
  sharded = tmp_path / "sharded"
  sharded.mkdir()
  shutil.copy(os.path.join(path, "config.json"), sharded / "config.json")
  for shard, keys in shards.items():
    save_file({k: tensors[k] for k in keys}, str(sharded / shard))
  weight_map = {k: s for s, keys in shards.items() for k in keys}
  (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  jax.tree_util.tree_map(np.testing.assert_array_equal, load_hf_t5(str(sharded)).params,
                         ref.params)

  pt = tmp_path / "pt"
  pt.mkdir()
  shutil.copy(os.path.join(path, "config.json"), pt / "config.json")
  torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, str(pt / "pytorch_model.bin"))
  jax.tree_util.tree_map(np.testing.assert_array_equal, load_hf_t5(str(pt)).params,
                         ref.params)


def test_relative_position_bucket_matches_transformers():
  bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
  rel = np.arange(-300, 301)
  for bidirectional in (True, False):
    for nb, md in ((32, 128), (8, 16)):
      want = bucket(torch.tensor(rel), bidirectional=bidirectional, num_buckets=nb,
                    max_distance=md).numpy()
      got = relative_position_bucket(jnp.asarray(rel, jnp.int32), bidirectional, nb, md)
      np.testing.assert_array_equal(np.asarray(got), want)


# ---------------------------------------------------------------------------- errors

def _copy(hf_dir, tmp_path):
  dst = tmp_path / "copy"
  shutil.copytree(hf_dir[0], dst)
  return dst


def test_missing_directory_and_files(hf_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="not a directory"):
    load_hf_t5(str(tmp_path / "nope"))
  d = _copy(hf_dir, tmp_path)
  (d / "model.safetensors").unlink()
  with pytest.raises(HFCheckpointNotFoundError, match="model.safetensors"):
    load_hf_t5(str(d))
  (d / "config.json").unlink()
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_hf_t5(str(d))


def test_wrong_shape_tensor_names_parameter_and_shapes(hf_dir, tmp_path):
  d = _copy(hf_dir, tmp_path)
  tensors = load_file(str(d / "model.safetensors"))
  name = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
  tensors[name] = np.zeros((32, 40), np.float32)
  save_file(tensors, str(d / "model.safetensors"))
  with pytest.raises(HFCheckpointError) as e:
    load_hf_t5(str(d))
  msg = str(e.value)
  for part in (name, "encoder/layers_1/mlp/wo/kernel", "(32, 40)", "(32, 48)",
               "model.safetensors"):
    assert part in msg


def test_missing_tensor_names_parameter(hf_dir, tmp_path):
  d = _copy(hf_dir, tmp_path)
  tensors = load_file(str(d / "model.safetensors"))
  del tensors["decoder.block.2.layer.1.EncDecAttention.k.weight"]
  save_file(tensors, str(d / "model.safetensors"))
  with pytest.raises(HFCheckpointError,
                     match=r"EncDecAttention\.k\.weight.*decoder/layers_2/"
                           r"encoder_decoder_attention/key/kernel.*missing"):
    load_hf_t5(str(d))


def test_truncated_safetensors(hf_dir, tmp_path):
  d = _copy(hf_dir, tmp_path)
  f = d / "model.safetensors"
  data = f.read_bytes()
  f.write_bytes(data[: len(data) // 2])
  with pytest.raises(HFCheckpointError, match="model.safetensors.*truncated or corrupt"):
    load_hf_t5(str(d))


@pytest.mark.parametrize("change,match", [
    ({"model_type": "bert", "architectures": ["BertModel"]}, "only T5"),
    ({"feed_forward_proj": "gated-silu"}, "feed_forward_proj"),
])
def test_non_t5_config(hf_dir, tmp_path, change, match):
  d = _copy(hf_dir, tmp_path)
  cfg = json.loads((d / "config.json").read_text())
  cfg.update(change)
  (d / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(HFCheckpointError, match=match):
    load_hf_t5(str(d))
