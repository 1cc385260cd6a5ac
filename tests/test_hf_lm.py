"""Hugging Face decoder-only LMs (models/lm/hf.py): parity with transformers.

Random-weight models of every supported model_type are made and saved by
transformers itself (tiny configs, no hub), loaded by us, and compared at
float32: logits on a ragged batch (padding must not change a row), greedy
decoding against `generate`, export back to a directory transformers loads.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest

import torch  # the test extra (setup.py): a missing one is a broken install
import transformers

import spec_cascade_jax as scj
from spec_cascade_jax.models.lm import HFCheckpointError, HFCheckpointNotFoundError, LMModel
from spec_cascade_jax.models.lm import config as lm_configs
from spec_cascade_jax.models.lm import hf as hf_lm

pytestmark = pytest.mark.slow  # parity with transformers' PyTorch LMs

V = 128
_COMMON = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=8,
               attention_dropout=0.0)


def _hf_config(model_type):
  """Tiny configs that switch on each family's features: GQA / MQA, sliding
  windows shorter than the prompts, soft-capping, qk-norm, rope scaling, EOS
  ids far from 1 (Llama, Qwen), q/k/v biases (Qwen)."""
  if model_type == "gemma":
    return transformers.GemmaConfig(**{**_COMMON, "num_key_value_heads": 1})
  if model_type == "gemma2":
    return transformers.Gemma2Config(**_COMMON, query_pre_attn_scalar=8, sliding_window=3,
                                     attn_logit_softcapping=5.0, final_logit_softcapping=3.0)
  if model_type == "gemma3_text":
    return transformers.Gemma3TextConfig(
        **_COMMON, query_pre_attn_scalar=8, sliding_window=3,
        layer_types=["sliding_attention", "full_attention"], rope_theta=1e6,
        rope_scaling={"rope_type": "linear", "factor": 8.0}, rope_local_base_freq=1e4)
  if model_type == "llama":
    return transformers.LlamaConfig(
        **_COMMON, rope_theta=1e4, max_position_embeddings=512, bos_token_id=126,
        eos_token_id=127, rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 64})
  return transformers.Qwen2Config(**{k: v for k, v in _COMMON.items() if k != "head_dim"},
                                  eos_token_id=127, tie_word_embeddings=True)


@pytest.fixture(scope="module", params=list(hf_lm.SUPPORTED_MODEL_TYPES))
def hf_dir(request, tmp_path_factory):
  """A random LM that transformers creates and saves itself -> (dir, torch model)."""
  torch.manual_seed(0)
  hf = transformers.AutoModelForCausalLM.from_config(_hf_config(request.param))
  with torch.no_grad():
    # Weights large enough for peaky distributions; non-trivial norms and biases.
    for name, p in hf.named_parameters():
      if "norm" in name:
        p.uniform_(-0.5, 0.5) if request.param.startswith("gemma") else p.uniform_(0.5, 1.5)
      elif name.endswith("bias"):
        p.uniform_(-0.3, 0.3)
      else:
        p.normal_(0.0, 0.3)
  path = str(tmp_path_factory.mktemp(f"hf_{request.param}"))
  hf.save_pretrained(path)
  return path, hf.eval()


# Rows of 7, 3 and 5 tokens, right-padded; token 0 is real in row 2.
PROMPTS = np.array([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 0, 0, 0, 0],
                    [0, 3, 1, 2, 4, 0, 0]], np.int32)
LENGTHS = np.array([7, 3, 5], np.int32)
_logits = jax.jit(lambda m, x: m.logits(x))


def _hf_logits(hf, ids):
  with torch.no_grad():
    return hf(torch.tensor(np.asarray(ids)[None], dtype=torch.long)).logits[0].numpy()


def test_logits_match_transformers(hf_dir):
  path, hf = hf_dir
  model = scj.load_model(path)
  assert isinstance(model, LMModel) and model.config.model_type == hf.config.model_type
  ours = np.asarray(_logits(model, PROMPTS))
  for b, n in enumerate(LENGTHS):
    theirs = _hf_logits(hf, PROMPTS[b, :n])        # each row alone, unpadded
    np.testing.assert_allclose(ours[b, :n], theirs, rtol=1e-4,
                               atol=1e-4 * np.abs(theirs).max(), err_msg=f"row {b}")


@pytest.mark.parametrize("model_type", hf_lm.SUPPORTED_MODEL_TYPES)
def test_greedy_matches_transformers_generate(model_type, tmp_path_factory):
  """generate(method="verifier") on the ragged batch (input_lengths) equals
  transformers' greedy `generate` of each row, up to and with its EOS; so
  does greedy speculative decoding with a drafter that is a noisy copy."""
  torch.manual_seed(1)
  hf = transformers.AutoModelForCausalLM.from_config(_hf_config(model_type))
  # Gemma's tied, scaled embeddings make a random model copy its last token
  # forever; norms of 1 + w with w in [-1.5, -0.5) and smaller weights (Gemma
  # 2/3) give varied greedy outputs.
  std = {"gemma2": 0.1, "gemma3_text": 0.1}.get(model_type, 0.3)
  with torch.no_grad():
    for name, p in hf.named_parameters():
      if "norm" not in name:
        p.normal_(0.0, std)
      elif model_type.startswith("gemma"):
        p.uniform_(-1.5, -0.5)
  path = str(tmp_path_factory.mktemp(f"greedy_{model_type}"))
  hf.save_pretrained(path)
  hf.eval()
  model = scj.load_model(path)
  n_new = 10
  res = scj.generate(None, model, PROMPTS, method="verifier", max_new_tokens=n_new,
                     input_lengths=LENGTHS)
  eos = model.config.eos_ids
  assert eos == ((1,) if model_type.startswith("gemma") else (127,))
  noise = np.random.default_rng(0)
  drafter = model.replace(params=jax.tree.map(
      lambda x: x + 0.1 * np.std(x) * noise.standard_normal(x.shape).astype(np.float32),
      model.params))
  sd = scj.generate(drafter, model, PROMPTS, method="speculative", num_draft_tokens=3,
                    max_new_tokens=n_new, input_lengths=LENGTHS)
  np.testing.assert_array_equal(sd.tokens, res.tokens)
  assert 0 < sd.stats["accepted"].sum() < sd.stats["draft_tokens"].sum()
  assert res.stats["num_tokens"].max() > 3 and len(np.unique(res.tokens)) > 4
  for b, n in enumerate(LENGTHS):
    with torch.no_grad():
      out = hf.generate(torch.tensor(PROMPTS[None, b, :n], dtype=torch.long),
                        attention_mask=torch.ones((1, n), dtype=torch.long),
                        do_sample=False, num_beams=1, max_new_tokens=n_new,
                        min_new_tokens=0, pad_token_id=0)[0, n:].numpy()
    stop = [i for i, t in enumerate(out) if t in eos]
    want = out[:stop[0] + 1] if stop else out
    k = int(res.stats["num_tokens"][b])
    np.testing.assert_array_equal(res.tokens[b, :k], want, err_msg=f"row {b}")
    assert (res.tokens[b, k:] == 0).all()


def test_export_loads_in_transformers_and_round_trips(hf_dir, tmp_path):
  path, hf = hf_dir
  model = hf_lm.load_hf_lm(path)
  out = str(tmp_path / "ours")
  hf_lm.save_hf_lm(model, out)
  back, info = transformers.AutoModelForCausalLM.from_pretrained(
      out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"]
  assert not info["mismatched_keys"] and not info["error_msgs"]
  back.eval()
  for b, n in enumerate(LENGTHS):
    want = _hf_logits(hf, PROMPTS[b, :n])
    np.testing.assert_allclose(_hf_logits(back, PROMPTS[b, :n]), want, rtol=1e-6,
                               atol=1e-6 * np.abs(want).max())
  again = hf_lm.load_hf_lm(out)
  assert again.config == model.config.replace(name="ours")
  jax.tree.map(np.testing.assert_array_equal, again.params, model.params)


def test_sharded_and_bfloat16_safetensors(hf_dir, tmp_path):
  """model.safetensors.index.json with two shards, and bfloat16 tensors (the
  published checkpoints' dtype; numpy cannot read them through safetensors)."""
  path, hf = hf_dir
  ref = hf_lm.load_hf_lm(path)
  state = {k: v.detach().clone() for k, v in hf.state_dict().items()
           if not (hf.config.tie_word_embeddings and k == "lm_head.weight")}
  names = sorted(state)
  shards = {"model-00001-of-00002.safetensors": names[::2],
            "model-00002-of-00002.safetensors": names[1::2]}
  from safetensors.torch import save_file
  for dtype, tol in ((torch.float32, 0.0), (torch.bfloat16, 2 ** -8)):
    d = tmp_path / str(dtype)
    d.mkdir()
    shutil.copy(os.path.join(path, "config.json"), d / "config.json")
    for shard, keys in shards.items():
      save_file({k: state[k].to(dtype).contiguous() for k in keys}, str(d / shard),
                metadata={"format": "pt"})
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}))
    got = hf_lm.load_hf_lm(str(d))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 1e-3),
                 got.params, ref.params)


# ---------------------------------------------------------------------------- errors

def _copy(hf_dir, tmp_path):
  dst = tmp_path / "copy"
  shutil.copytree(hf_dir[0], dst)
  return dst


def _edit_config(d, **change):
  cfg = json.loads((d / "config.json").read_text())
  cfg.update(change)
  (d / "config.json").write_text(json.dumps(cfg))


def test_unsupported_model_type_is_named_with_the_supported_ones(hf_dir, tmp_path):
  d = _copy(hf_dir, tmp_path)
  _edit_config(d, model_type="mistral")
  with pytest.raises(HFCheckpointError) as e:
    scj.load_model(str(d))
  for part in ("'mistral'", "gemma", "gemma2", "gemma3_text", "llama", "qwen2", "t5"):
    assert part in str(e.value)
  _edit_config(d, model_type="llama", rope_scaling={"rope_type": "yarn", "factor": 4.0},
               rope_parameters=None)
  with pytest.raises(HFCheckpointError, match="rope type 'yarn' is not supported"):
    hf_lm.load_hf_lm(str(d))


def test_bad_weights_name_file_tensor_and_fix(hf_dir, tmp_path):
  from safetensors.numpy import load_file, save_file
  d = _copy(hf_dir, tmp_path)
  f = d / "model.safetensors"
  tensors = load_file(str(f))
  name = "model.layers.1.mlp.down_proj.weight"
  tensors[name] = np.zeros((32, 40), np.float32)
  save_file(tensors, str(f))
  with pytest.raises(HFCheckpointError) as e:
    hf_lm.load_hf_lm(str(d))
  for part in (name, "layers_1/mlp/wo/kernel", "(32, 40)", "(32, 64)", "model.safetensors"):
    assert part in str(e.value)
  del tensors[name]
  save_file(tensors, str(f))
  with pytest.raises(HFCheckpointError, match=r"down_proj.*layers_1/mlp/wo/kernel.*missing"):
    hf_lm.load_hf_lm(str(d))
  f.write_bytes(f.read_bytes()[:1000])
  with pytest.raises(HFCheckpointError, match="truncated or corrupt"):
    hf_lm.load_hf_lm(str(d))
  f.unlink()
  with pytest.raises(HFCheckpointNotFoundError, match="model.safetensors"):
    hf_lm.load_hf_lm(str(d))


# The config.json fields of published checkpoints (older transformers' format:
# rope_theta / rope_scaling / sliding_window_pattern), abridged to what we read.
PUBLISHED_CONFIGS = {
    "gemma-2-9b": dict(
        model_type="gemma2", vocab_size=256000, hidden_size=3584, intermediate_size=14336,
        num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
        hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0, rope_theta=10000.0, rms_norm_eps=1e-6,
        bos_token_id=2, eos_token_id=1, pad_token_id=0, cache_implementation="hybrid"),
    "gemma-3-12b": dict(
        model_type="gemma3_text", vocab_size=262208, hidden_size=3840,
        intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16,
        num_key_value_heads=8, head_dim=256, hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=256, sliding_window=1024, sliding_window_pattern=6,
        rope_theta=1000000.0, rope_local_base_freq=10000.0,
        rope_scaling={"factor": 8.0, "rope_type": "linear"}, final_logit_softcapping=None,
        attn_logit_softcapping=None, rms_norm_eps=1e-6, bos_token_id=2, eos_token_id=1,
        pad_token_id=0),
    "llama-3.1-8b": dict(
        model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        hidden_act="silu", attention_bias=False, mlp_bias=False, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling={"factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "rope_type": "llama3",
                                           "original_max_position_embeddings": 8192},
        tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001),
    "qwen2.5-7b": dict(
        model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
        num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=131072,
        use_sliding_window=False, max_window_layers=28, tie_word_embeddings=False,
        bos_token_id=151643, eos_token_id=151643),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_CONFIGS))
def test_published_config_json_gives_the_preset(name):
  cfg = hf_lm.config_from_hf(PUBLISHED_CONFIGS[name], name=name)
  assert cfg == lm_configs.PRESETS[name]
  # And back: our config.json reads as the same configuration.
  assert hf_lm.config_from_hf(hf_lm.config_to_hf(cfg), name=name) == cfg
