"""Decoder-only pairs in the main job's pipeline: a Hugging Face tokenizer as
the vocabulary, the bundled task as few-shot prompts, ragged prompts through
`decode_batched` / `time_point` / `infer`, the size-checked loads of the gin
model files, and a drafter widened to the verifier's vocabulary.

The tokenizer is a small BPE trained here with the `tokenizers` library on
the training split's messages (saved as tokenizer.json, as every Gemma, Llama
and Qwen directory ships it), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os

import gin
import jax
import numpy as np
import pytest
import tokenizers

import spec_cascade_jax as scj
from spec_cascade_jax.data import hf_tokenizer
from spec_cascade_jax.data.dataset import load_split
from spec_cascade_jax.data.vocab import load_vocabulary
from spec_cascade_jax.evaluation import grids, infer, prompts
from spec_cascade_jax.models.lm import save_hf_lm
from spec_cascade_jax.models.padded import NEG_INF, pad_vocabulary
from spec_cascade_jax.testing import tiny_lm_pair

BOS, EOS = "<s>", "</s>"
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _write_tokenizer(path, eos_in="config"):
  """A 400-id byte-level BPE with BOS added to prompts; EOS declared in
  config.json ("config"), generation_config.json ("generation", which wins),
  tokenizer_config.json only ("tokenizer") or nowhere (None)."""
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=400, special_tokens=["<pad>", BOS, EOS],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  rows = load_split("train")[:3000]
  tok.train_from_iterator([r["en"] for r in rows] + [r["de"] for r in rows], trainer)
  tok.post_processor = tokenizers.processors.TemplateProcessing(
      single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
  os.makedirs(path, exist_ok=True)
  tok.save(os.path.join(path, "tokenizer.json"))
  eos = tok.token_to_id(EOS)
  if eos_in == "config":
    json.dump({"eos_token_id": eos}, open(os.path.join(path, "config.json"), "w"))
  elif eos_in == "generation":
    json.dump({"eos_token_id": 0}, open(os.path.join(path, "config.json"), "w"))
    json.dump({"eos_token_id": [eos, 7]},
              open(os.path.join(path, "generation_config.json"), "w"))
  elif eos_in == "tokenizer":
    json.dump({"eos_token": {"content": EOS}},
              open(os.path.join(path, "tokenizer_config.json"), "w"))
  return tok


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok"))
  _write_tokenizer(path)
  return path


@pytest.fixture(scope="module")
def lm_pair(tok_dir):
  """Llama-shaped (no pad id) pair over the tokenizer's ids; EOS = the tokenizer's."""
  vocab = hf_tokenizer.HFTokenizerVocabulary(tok_dir)
  d, v = tiny_lm_pair(jax.random.PRNGKey(1), "llama", vocab_size=vocab.vocab_size,
                      init_std=0.3)
  return tuple(m.replace(config=m.config.replace(eos_ids=vocab.eos_ids)) for m in (d, v))


def test_tokenizer_vocabulary(tok_dir):
  vocab = load_vocabulary(tok_dir)
  assert isinstance(vocab, hf_tokenizer.HFTokenizerVocabulary)
  text = "Datei öffnen"
  ids, prompt_ids = vocab.encode(text), vocab.encode_prompt(text)
  bos = vocab.tokenizer.token_to_id(BOS)
  assert prompt_ids == [bos] + ids and bos not in ids
  assert vocab.decode(ids) == text
  assert vocab.decode(ids + [vocab.eos_id] + ids) == text   # stops at EOS
  assert vocab.decode([bos] + ids) == text                  # special tokens dropped


@pytest.mark.parametrize("where", ["generation", "tokenizer"])
def test_tokenizer_eos_sources(tmp_path, where):
  tok = _write_tokenizer(str(tmp_path), eos_in=where)
  vocab = hf_tokenizer.HFTokenizerVocabulary(str(tmp_path))
  eos = tok.token_to_id(EOS)
  assert vocab.eos_ids == ((eos, 7) if where == "generation" else (eos,))


def test_tokenizer_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no tokenizer.json"):
    hf_tokenizer.HFTokenizerVocabulary(str(tmp_path))
  _write_tokenizer(str(tmp_path), eos_in=None)
  with pytest.raises(ValueError, match="no end-of-sequence id"):
    hf_tokenizer.HFTokenizerVocabulary(str(tmp_path))


def test_prompted_task(tok_dir):
  data = infer.load_task("gettext_en_de_2shot", "validation", tok_dir,
                         max_input_length=512, num_examples=5)
  vocab = hf_tokenizer.HFTokenizerVocabulary(tok_dir)
  shots = prompts.pick_shots(load_split("train"), 2)
  assert len(data) == 5 and len(shots) == 2
  for x, ids in zip(data.inputs, data.input_ids):
    text = prompts.prompt(shots, x)
    assert ids == vocab.encode_prompt(text)
    assert text.startswith(prompts.TRANSLATE_EN_DE.instruction) and text.endswith(f"English: {x}\nGerman:")
    assert all(f"English: {s['en']}\nGerman: {s['de']}" in text for s in shots)
  short = infer.load_task("gettext_en_de_2shot", "validation", tok_dir,
                          max_input_length=24, num_examples=5)
  for full, cut in zip(data.input_ids, short.input_ids):
    assert cut == full[:1] + full[-23:]     # BOS kept, the end of the prompt kept
  assert data.postprocess(" Datei öffnen\n\nEnglish: x", is_target=False) == "Datei öffnen"
  assert data.postprocess("a\nb", is_target=True) == "a\nb"
  assert prompts.num_shots("gettext_en_de") is None and prompts.num_shots("x_5shot") is None


def _alone(model_d, model_v, ids, point, max_new):
  """One prompt decoded on its own: unpadded, no input_lengths."""
  res = scj.generate(model_d, model_v, np.array([ids], np.int32),
                     **infer.decode_kwargs(point, max_new))
  return infer.cut_at_eos([int(t) for t in res.tokens[0]], model_v.eos_id)


@pytest.mark.slow
def test_decode_batched_ragged_prompts_equal_each_prompt_alone(lm_pair, tok_dir):
  drafter, verifier = lm_pair
  data = infer.load_task("gettext_en_de_1shot", "validation", tok_dir,
                         max_input_length=128, num_examples=5)
  assert len({len(x) for x in data.input_ids}) > 1          # ragged
  sd = grids.Point("SpecDecode", "speculative", num_draft_tokens=3)
  ver = grids.Point("Verifier", "verifier")
  toks, stats = infer.decode_batched(drafter, verifier, data.input_ids, sd, batch_size=4,
                                     max_new_tokens=8, buckets=(64, 128))
  v_toks, _ = infer.decode_batched(drafter, verifier, data.input_ids, ver, batch_size=4,
                                   max_new_tokens=8, buckets=(64, 128))
  assert toks == v_toks                                     # greedy SD = verifier
  for ids, got in zip(data.input_ids, toks):
    assert got == _alone(drafter, verifier, ids, ver, 8)    # padding changed no row
  assert stats["rounds"].min() >= 1
  timed = infer.time_point(drafter, verifier, data.input_ids[:2], sd, 8, (64, 128), repeats=1)
  assert len(timed.method_s) == 2 and (timed.verifier_s > 0).all()


def test_pad_vocabulary(lm_pair):
  drafter, verifier = lm_pair
  wide = pad_vocabulary(drafter, drafter.vocab_size + 5)
  ids = np.array([[3, 4, 5]], np.int32)
  own, padded = np.asarray(drafter.logits(ids)), np.asarray(wide.logits(ids))
  assert padded.shape[-1] == own.shape[-1] + 5
  np.testing.assert_array_equal(padded[..., :own.shape[-1]], own)
  assert (padded[..., own.shape[-1]:] == NEG_INF).all()
  probs = np.asarray(jax.nn.softmax(padded, -1))
  assert (probs[..., own.shape[-1]:] == 0).all()
  assert wide.eos_id == drafter.eos_id and wide.decoder_only
  with pytest.raises(ValueError, match="can only be widened"):
    pad_vocabulary(drafter, drafter.vocab_size - 1)
  narrow = verifier.replace(config=verifier.config.replace(vocab_size=verifier.vocab_size - 5),
                            params=dict(verifier.params, token_embedder={
                                "embedding": verifier.params["token_embedder"]["embedding"][:-5]}))
  with pytest.raises(ValueError, match="pad_vocabulary"):
    scj.generate(narrow, verifier, ids, method="speculative")


@pytest.mark.slow
def test_widened_drafter_decodes_exactly(lm_pair):
  """Greedy SD with a drafter widened by 5 never-proposed ids equals the verifier."""
  drafter, verifier = lm_pair
  wide_v = pad_vocabulary(verifier, verifier.vocab_size + 5)
  ids = np.array([[3, 4, 5, 6], [7, 8, 9, 10]], np.int32)
  sd = scj.generate(pad_vocabulary(drafter, verifier.vocab_size + 5), wide_v, ids,
                    method="speculative", num_draft_tokens=3, max_new_tokens=8)
  ref = scj.generate(None, verifier, ids, method="verifier", max_new_tokens=8)
  np.testing.assert_array_equal(sd.tokens, ref.tokens)


def _parse(files, bindings):
  gin.clear_config()
  gin.add_config_file_search_path(CONFIGS)
  gin.parse_config_files_and_bindings([os.path.join(CONFIGS, f) for f in files], bindings,
                                      finalize_config=True)


@pytest.mark.parametrize("pair,drafter,verifier", [
    ("gemma_2_2b_9b", "GEMMA_2_2B", "GEMMA_2_9B"),
    ("gemma_2_2b_27b", "GEMMA_2_2B", "GEMMA_2_27B"),
    ("llama_3_2_1b_3_1_8b", "LLAMA_3_2_1B", "LLAMA_3_1_8B"),
    ("qwen2_5_0_5b_7b", "QWEN2_5_0_5B", "QWEN2_5_7B"),
])
def test_lm_pair_files_reach_the_size_check(tmp_path, lm_pair, pair, drafter, verifier):
  """Each pair file loads its checkpoints through the preset check: a tiny
  model where the published one is expected fails naming the preset."""
  save_hf_lm(lm_pair[1], str(tmp_path / "m"))
  try:
    _parse(["runs/infer.gin", f"models/{pair}.gin"],
           [f"{drafter}_CHECKPOINT = '{tmp_path / 'm'}'",
            f"{verifier}_CHECKPOINT = '{tmp_path / 'm'}'",
            "TASK = 'gettext_en_de_5shot'", "OUTPUT_DIR = '/nonexistent'"])
    # The prompts are encoded with the verifier's tokenizer.
    assert repr(gin.query_parameter("VOCABULARY/macro.value")) == f"%{verifier}_CHECKPOINT"
    preset = gin.query_parameter(
        f"{drafter.lower()}/spec_cascade_jax.evaluation.infer.load_checked_model.preset")
    load = gin.get_configurable(
        f"{drafter.lower()}/spec_cascade_jax.evaluation.infer.load_checked_model")
    with pytest.raises(ValueError, match=f"is not a {preset} checkpoint"):
      load()
  finally:
    gin.clear_config()


def test_checked_load_of_a_matching_lm_and_unknown_preset(tmp_path, lm_pair):
  save_hf_lm(lm_pair[1], str(tmp_path / "m"))
  with pytest.raises(ValueError, match="unknown preset 'gemma-2-3b'.*gemma-2-2b"):
    infer.load_checked_model(str(tmp_path / "m"), preset="gemma-2-3b")
  model = infer.load_checked_model(str(tmp_path / "m"))
  assert model.config.num_layers == lm_pair[1].config.num_layers


def test_gsm8k_postprocessing_and_accuracy():
  from spec_cascade_jax.evaluation import metrics
  fn = prompts.final_number
  assert fn("Natalia sold 48/2 = 24 clips.\n#### 1,072") == "1072"          # a target
  assert fn(" 3 + 4 = 7 apples.\n#### 7\n\nQuestion: 12 more?") == "7"
  assert fn(" She has 5 + 6 = 11.0 left.\n\nQuestion: #### 3") == "11"    # no ####: last number
  assert fn(" I do not know.") == ""
  assert metrics.accuracy(["1072", "7", "3"], ["1072", "8", "3"]) == {"accuracy": 200 / 3}
  with pytest.raises(ValueError, match="one prediction per target"):
    metrics.accuracy(["1"], [])


@pytest.mark.slow
def test_sweep_takes_a_decoder_only_pair_unchanged(lm_pair, tok_dir, tmp_path):
  """The main job's sweep (quality, paired latency, summary, plots) on a
  prompted task with an LM pair; greedy SD keeps the verifier's quality."""
  from spec_cascade_jax.evaluation import sweep
  drafter, verifier = lm_pair
  summary = sweep.run_sweep(drafter, verifier, output_dir=str(tmp_path), task="gettext_en_de_1shot",
                            grid="small", curves=["Verifier", "SpecDecode"],
                            num_draft_tokens=3, num_quality_examples=4,
                            num_latency_examples=2, repeats=1, batch_size=4,
                            max_new_tokens=6, max_input_length=128, buckets=(64, 128),
                            vocabulary=tok_dir)
  assert summary["tables"]
  records = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  points = {r["label"]: r for r in records if r["kind"] == "point"}
  assert points["SpecDecode"]["quality"] == points["Verifier"]["quality"]
  assert points["SpecDecode"]["cost"]["total_num_tokens"] == 4 * 6   # no early EOS here
  assert points["SpecDecode"]["cost"]["verifier_calls_per_token"] <= 1.0
  assert records[0]["context"]["task"] == "gettext_en_de_1shot"
  for name in ("results.jsonl", "summary.md", "tradeoff.png"):
    assert os.path.getsize(tmp_path / name) > 0
