"""The demo SentencePiece vocabulary: ids, round trips, seqio semantics, no TF."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spec_cascade_jax.data import vocab as vocab_lib

SAMPLES = [
    "Open the file",
    "Datei öffnen",
    "Größe der Übergabe: %s Bytes",
    "%1$s von {name}: %d Einträge (ÄÖÜ äöü ß)",
    "could not read MERGE_MODE",
    "Konnte »%s« nicht lesen",
]


@pytest.fixture(scope="module")
def demo():
  return vocab_lib.load_vocabulary("gettext")


def test_special_ids_and_size(demo):
  assert (demo.pad_id, demo.eos_id, demo.unk_id) == (0, 1, 2)
  assert demo.vocab_size == 8000
  assert demo.tokenizer.bos_id() == -1
  assert demo.tokenizer.IdToPiece(0) == "<pad>"
  assert demo.tokenizer.IdToPiece(1) == "</s>"
  assert demo.tokenizer.IdToPiece(2) == "<unk>"
  assert demo.sentencepiece_model_file.endswith("gettext.model")


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(demo, text):
  ids = demo.encode(text)
  assert ids and all(3 <= i < demo.vocab_size for i in ids)  # no pad/eos/unk inside
  assert demo.decode(ids) == text


def test_umlauts_are_pieces_not_bytes(demo):
  # character_coverage 1.0: umlauts have their own pieces, no byte fallback.
  for ch in "äöüÄÖÜß":
    ids = demo.encode(ch)
    pieces = [demo.tokenizer.IdToPiece(i) for i in ids]
    assert not any(p.startswith("<0x") for p in pieces), (ch, pieces)


def test_unseen_characters_fall_back_to_bytes(demo):
  ids = demo.encode("日本")
  assert 2 not in ids
  assert demo.decode(ids) == "日本"


def test_decode_follows_seqio(demo):
  ids = demo.encode("Datei öffnen")
  assert demo.decode(ids + [1] + demo.encode("Rest")) == "Datei öffnen"  # cut after EOS
  assert demo.decode(ids + [1, 0, 0]) == "Datei öffnen"                 # pad ignored
  assert demo.decode([0, 0] + ids) == "Datei öffnen"
  # Ids past the SentencePiece size (extra ids) decode as unk, like seqio.
  assert demo.decode([demo.vocab_size + 5]) == demo.decode([2])
  assert demo.decode_batch([ids, ids + [1]]) == ["Datei öffnen"] * 2


def test_extra_ids_and_paths(demo):
  v = vocab_lib.load_vocabulary(demo.sentencepiece_model_file, extra_ids=100)
  assert v.vocab_size == 8100
  assert v.encode("Hilfe") == demo.encode("Hilfe")
  with pytest.raises(FileNotFoundError, match="SentencePiece .model"):
    vocab_lib.load_vocabulary("no_such_vocab")


@pytest.mark.slow
def test_matches_seqio_when_installed(demo):
  seqio = pytest.importorskip("seqio")
  ref = seqio.SentencePieceVocabulary(demo.sentencepiece_model_file, extra_ids=0)
  for text in SAMPLES:
    assert ref.encode(text) == demo.encode(text)
    ids = demo.encode(text) + [1, 0, 5]
    assert ref.decode(ids) == demo.decode(ids)
  assert ref.vocab_size == demo.vocab_size


def test_no_tensorflow_import():
  code = (
      "import sys\n"
      "from spec_cascade_jax.data import vocab, dataset\n"
      "v = vocab.load_vocabulary('gettext')\n"
      "assert v.decode(v.encode('Datei öffnen')) == 'Datei öffnen'\n"
      "assert len(dataset.load_split('validation')) > 1000\n"
      "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
      "print('ok')\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "ok"


def test_training_is_deterministic_and_uses_t5_ids(tmp_path):
  texts = [f"Datei {i} öffnen und Größe {i % 7} prüfen" for i in range(300)]
  texts += [f"Open file {i} and check size {i % 7}" for i in range(300)]
  a = vocab_lib.train_vocabulary(texts, str(tmp_path / "a.model"), vocab_size=300)
  b = vocab_lib.train_vocabulary(texts, str(tmp_path / "b.model"), vocab_size=300)
  with open(a, "rb") as fa, open(b, "rb") as fb:
    data = fa.read()
    assert data == fb.read()
  assert str(tmp_path).encode() not in data  # no machine path inside the model
  v = vocab_lib.load_vocabulary(a)
  assert (v.pad_id, v.eos_id, v.unk_id, v.vocab_size) == (0, 1, 2, 300)
  assert v.decode(v.encode("Datei 3 öffnen")) == "Datei 3 öffnen"
  assert (tmp_path / "a.vocab").read_text(encoding="utf-8").startswith("<pad>\t")
  with pytest.raises(ValueError, match=".model"):
    vocab_lib.train_vocabulary(texts, str(tmp_path / "c.bin"))


@pytest.mark.slow
def test_shipped_model_reproduces(tmp_path):
  # Retraining from the shipped train split gives the shipped model, byte for byte.
  import os  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.data import dataset  # pylint: disable=g-import-not-at-top
  out = vocab_lib.train_vocabulary_from_split_file(
      os.path.join(dataset.DATA_DIR, "train.jsonl.gz"), str(tmp_path / "gettext.model"),
      placeholder_units=True)
  with open(out, "rb") as f1, open(vocab_lib.vocabulary_path("gettext"), "rb") as f2:
    assert f1.read() == f2.read()


def test_placeholder_units_become_single_pieces(tmp_path):
  import gzip  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  rows = [{"en": f"Cannot open %s: file {i} has <b>%d</b> lines",
           "de": f"Kann %s nicht öffnen: Datei {i} hat <b>%d</b> Zeilen"} for i in range(40)]
  rows += [{"en": f"Value %(count)d of item {i}", "de": f"Wert %(count)d von Element {i}"}
           for i in range(40)]
  split = tmp_path / "train.jsonl.gz"
  with gzip.open(split, "wt", encoding="utf-8") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  plain = vocab_lib.load_vocabulary(vocab_lib.train_vocabulary_from_split_file(
      str(split), str(tmp_path / "plain.model"), vocab_size=340))
  units = vocab_lib.load_vocabulary(vocab_lib.train_vocabulary_from_split_file(
      str(split), str(tmp_path / "units.model"), vocab_size=340, placeholder_units=True))
  text = "Wert %(count)d: <b>%d</b> von %s"
  pieces = [units.tokenizer.IdToPiece(i) for i in units.encode(text)]
  for unit in ("%(count)d", "<b>", "</b>", "%d", "%s"):
    assert unit in pieces, (unit, pieces)
  assert "%(count)d" not in [plain.tokenizer.IdToPiece(i) for i in plain.encode(text)]
  assert units.decode(units.encode(text)) == text


def test_placeholder_piece_mask_marks_the_placeholder_units_only():
  v2 = vocab_lib.load_vocabulary("gettext")
  mask = vocab_lib.placeholder_piece_mask(v2)
  assert mask.shape == (v2.vocab_size,) and mask.dtype == bool
  ids = v2.encode("Cannot open %s: %d files, %(name)s in {0}")
  pieces = {v2.tokenizer.IdToPiece(i): bool(mask[i]) for i in ids}
  for unit in ("%s", "%d", "%(name)s", "{0}"):
    assert pieces[unit], (unit, pieces)
  assert not any(m for p, m in pieces.items() if "%" not in p and "{" not in p), pieces
  assert not mask[[vocab_lib.PAD_ID, vocab_lib.EOS_ID, v2.unk_id]].any()


def test_encode_with_eos_truncates_before_the_eos(demo):
  text = SAMPLES[3]
  ids = demo.encode(text)
  assert vocab_lib.encode_with_eos(demo, text, 128) == ids + [1]
  short = vocab_lib.encode_with_eos(demo, text, 4)
  assert short == ids[:3] + [1]
  assert vocab_lib.encode_with_eos(demo, text, 1) == [1]
  with pytest.raises(ValueError, match="max_len must be >= 1"):
    vocab_lib.encode_with_eos(demo, text, 0)
