"""SentencePiece vocabularies with seqio's interface, without TensorFlow.

    vocab = load_vocabulary("gettext")         # the bundled pair's vocabulary
    vocab = load_vocabulary("gettext", models=(drafter, verifier))  # checked against them
    vocab = load_vocabulary("/path/spiece.model", extra_ids=100)   # T5's own
    ids = vocab.encode("Datei öffnen")         # list[int], no EOS
    vocab.decode(ids + [1, 0, 0])              # "Datei öffnen": stops at EOS

Ids follow T5: pad 0, eos 1, unk 2, no BOS. `decode` mirrors
`seqio.SentencePieceVocabulary.decode`: ids at or above the SentencePiece size
(extra ids / sentinels) become unk, everything after the first EOS is cut, and
SentencePiece drops the pad and EOS control pieces.

The bundled "gettext" vocabulary is trained by

    python -m spec_cascade_jax.data.vocab --train --placeholder_units \
        --split_file spec_cascade_jax/assets/data/gettext_en_de/train.jsonl.gz \
        --output spec_cascade_jax/assets/vocab/gettext.model

on the English and German sides of the training split (unigram, 8000 pieces,
character coverage 1.0 for umlauts, byte fallback for unseen characters, one
thread and no input shuffling so the same input gives the same model; the
frequent format placeholders and markup tags are single pieces).

A model records the vocabulary it was trained with (models/vocab_record.py);
`check_vocabulary` raises when a model meets another one, before any decoding.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import io
import sys
from typing import Iterable, Sequence

from spec_cascade_jax.data.fingerprint import file_fingerprint

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
DEFAULT_VOCAB_SIZE = 8000
VOCAB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "assets", "vocab")
BUNDLED = {"gettext": "gettext.model"}
DEFAULT_VOCABULARY = "gettext"   # the bundled pair's


class VocabularyMismatchError(ValueError):
  """A model meets a vocabulary other than the one it was trained with."""


class SentencePieceVocabulary:
  """seqio-compatible SentencePiece vocabulary in pure Python.

  Attributes:
    sentencepiece_model_file: path of the .model file.
    extra_ids: sentinel ids appended after the SentencePiece pieces (T5: 100).
  """

  def __init__(self, sentencepiece_model_file: str, extra_ids: int = 0,
               name: str | None = None):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(sentencepiece_model_file):
      raise FileNotFoundError(f"SentencePiece model {sentencepiece_model_file!r} not found")
    self.sentencepiece_model_file = sentencepiece_model_file
    # The bundled name, else the file name: what messages call it.
    self.name = name or os.path.basename(sentencepiece_model_file)
    self.extra_ids = int(extra_ids)
    self.tokenizer = spm.SentencePieceProcessor(model_file=sentencepiece_model_file)
    if (self.tokenizer.pad_id(), self.tokenizer.eos_id()) != (PAD_ID, EOS_ID):
      raise ValueError(
          f"{sentencepiece_model_file!r} has pad_id={self.tokenizer.pad_id()}, "
          f"eos_id={self.tokenizer.eos_id()}; T5 models need pad 0 and eos 1 (train with "
          "pad_id=0, eos_id=1, unk_id=2, bos_id=-1)")

  @property
  def pad_id(self) -> int:
    return PAD_ID

  @property
  def eos_id(self) -> int:
    return EOS_ID

  @property
  def unk_id(self) -> int:
    return self.tokenizer.unk_id()

  @property
  def fingerprint(self) -> str:
    """sha256 of the .model file (what a model records, models/vocab_record.py)."""
    return file_fingerprint(os.path.realpath(self.sentencepiece_model_file))

  @property
  def _base_vocab_size(self) -> int:
    return self.tokenizer.GetPieceSize()

  @property
  def vocab_size(self) -> int:
    """SentencePiece pieces plus extra ids, as seqio counts them."""
    return self._base_vocab_size + self.extra_ids

  def encode(self, s: str) -> list[int]:
    """Text -> ids, no EOS appended (seqio's append_eos adds it)."""
    return list(self.tokenizer.EncodeAsIds(s))

  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text, up to the first EOS; pad and EOS produce no text."""
    clean = [int(i) for i in ids]
    clean = [self.unk_id if i >= self._base_vocab_size else i for i in clean]
    if EOS_ID in clean:
      clean = clean[:clean.index(EOS_ID) + 1]
    return self.tokenizer.DecodeIds(clean)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [self.encode(t) for t in texts]

  def decode_batch(self, ids: Iterable[Iterable[int]]) -> list[str]:
    return [self.decode(row) for row in ids]

  def __repr__(self) -> str:
    return (f"SentencePieceVocabulary({os.path.basename(self.sentencepiece_model_file)!r}, "
            f"vocab_size={self.vocab_size})")


def placeholder_piece_mask(vocab) -> "np.ndarray":
  """Bool [vocab_size]: True for pieces that are a whole format placeholder
  (`placeholders.PLACEHOLDER`, with or without SentencePiece's word-start
  mark), the units a translation must copy; the trainer's
  `placeholder_weight` weighs positions that predict them."""
  import numpy as np
  from spec_cascade_jax.data import placeholders
  mask = np.zeros(vocab.vocab_size, bool)
  for i in range(vocab.tokenizer.GetPieceSize()):  # extra ids are sentinels, not text
    piece = vocab.tokenizer.IdToPiece(i).lstrip("\u2581")
    mask[i] = bool(piece) and placeholders.PLACEHOLDER.fullmatch(piece) is not None
  return mask


def encode_with_eos(vocab, text: str, max_len: int) -> list[int]:
  """`text` -> ids with EOS appended, truncated to `max_len` ids (EOS kept):
  the model input of one message, and a training target (seqio's append_eos,
  then trimming to the feature length)."""
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1 (room for EOS); got {max_len}.")
  return vocab.encode(text)[:max_len - 1] + [EOS_ID]


def vocabulary_path(name_or_path: str) -> str:
  """Resolves a bundled name ("gettext") or a .model path to a file path."""
  if name_or_path in BUNDLED:
    path = os.path.join(VOCAB_DIR, BUNDLED[name_or_path])
  else:
    path = os.path.expanduser(name_or_path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"vocabulary {name_or_path!r} not found: pass one of {sorted(BUNDLED)}, the path "
        "of a SentencePiece .model file, or a Hugging Face directory with tokenizer.json")
  return path


def load_vocabulary(name_or_path: str = DEFAULT_VOCABULARY, extra_ids: int = 0,
                    models: Sequence = ()):
  """A bundled vocabulary by name, any SentencePiece .model by path, or the
  tokenizer of a Hugging Face directory (decoder-only LMs; data/hf_tokenizer.py).

  Args:
    name_or_path: "gettext" (the bundled pair's), a .model path, or a
      directory holding tokenizer.json.
    extra_ids: sentinel ids after the pieces; 0 for "gettext", 100 for T5's
      own vocabulary to match T5 checkpoints (32000 + 100). Not used for a
      Hugging Face tokenizer.
    models: models that will decode with it (e.g. `(drafter, verifier)`):
      `check_vocabulary` raises VocabularyMismatchError if one of them
      records another vocabulary, or has fewer outputs than it has ids.
  """
  from spec_cascade_jax.data import hf_tokenizer  # pylint: disable=g-import-not-at-top
  if hf_tokenizer.is_tokenizer_dir(os.path.expanduser(name_or_path)):
    vocab = hf_tokenizer.HFTokenizerVocabulary(os.path.expanduser(name_or_path))
  else:
    vocab = SentencePieceVocabulary(vocabulary_path(name_or_path), extra_ids=extra_ids,
                                    name=name_or_path if name_or_path in BUNDLED else None)
  check_vocabulary(vocab, *models)
  return vocab


def check_vocabulary(vocab, *models) -> None:
  """Raises VocabularyMismatchError, before any decoding, when a model records
  a vocabulary (models/vocab_record.py) whose fingerprint differs from
  `vocab`'s, or when `vocab` has more ids than a model has outputs. Models
  that record none (Hugging Face, t5x checkpoints) get the size check only;
  None entries (no drafter) are skipped."""
  for model in models:
    if model is None:
      continue
    inner = model   # the family model under wrappers (sharded, padded) records it
    while not hasattr(inner, "vocabulary") and hasattr(inner, "model"):
      inner = inner.model
    record = getattr(inner, "vocabulary", None)   # models/vocab_record.py
    name = getattr(vocab, "name", repr(vocab))
    fingerprint = getattr(vocab, "fingerprint", None)
    if record is not None and fingerprint is not None and record.sha256 != fingerprint:
      owner = getattr(getattr(inner, "config", None), "name", "") or "a model"
      hint = (f"load_vocabulary({record.name!r})" if record.name in BUNDLED
              else f"the vocabulary {record.name!r} it was saved with")
      raise VocabularyMismatchError(
          f"{owner!r} was trained with the vocabulary {record.name!r} (sha256"
          f" {record.sha256[:12]}...), but is given {name!r} (sha256 {fingerprint[:12]}...):"
          f" it would decode garbage. Use {hint} (in gin: VOCABULARY = {record.name!r}).")
    model_size = getattr(model, "vocab_size", None)
    if model_size is not None and vocab.vocab_size > int(model_size):
      raise VocabularyMismatchError(
          f"the vocabulary {name!r} has {vocab.vocab_size} ids but the model has only"
          f" {int(model_size)} outputs: it is not this model's vocabulary. Pass the"
          " vocabulary the model was trained with.")


def read_split_texts(split_file: str) -> list[str]:
  """English then German text of every row of a .jsonl.gz split, file order."""
  with gzip.open(split_file, "rt", encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r["en"] for r in rows] + [r["de"] for r in rows]


def train_vocabulary(texts: Sequence[str], output: str,
                     vocab_size: int = DEFAULT_VOCAB_SIZE, seed: int = 0,
                     user_defined_symbols: Sequence[str] = ()) -> str:
  """Trains a T5-id unigram SentencePiece model on `texts`, writes `output`.

  Args:
    texts: training sentences, used in the given order (all of them).
    output: path of the .model file to write (a .vocab file is written beside it).
    vocab_size: number of pieces, including pad/eos/unk and 256 byte pieces.
    seed: SentencePiece's random seed (fixed so that training is repeatable).
    user_defined_symbols: strings that are always one piece wherever they
      occur (format placeholders and markup, `placeholders.frequent_units`).

  Returns:
    `output`.
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if not output.endswith(".model"):
    raise ValueError(f"output {output!r} must end with .model")
  texts = [t for t in texts if t.strip()]
  if not texts:
    raise ValueError("no training text given")
  # Sentences come from an iterator and the model goes to a buffer: no file
  # path is recorded in the model's trainer_spec, so the bytes are repeatable
  # and name no directory of the machine that trained it.
  model = io.BytesIO()
  spm.set_random_generator_seed(seed)
  spm.SentencePieceTrainer.Train(
      sentence_iterator=iter([t.replace("\n", " ") for t in texts]), model_writer=model,
      model_type="unigram", vocab_size=vocab_size,
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      character_coverage=1.0, byte_fallback=True,
      # Repeatability: one thread, every sentence, in the given order.
      num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
      # Long software messages stay whole sentences (build_gettext keeps <= 256 chars).
      max_sentence_length=4096, minloglevel=2,
      user_defined_symbols=list(user_defined_symbols))
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, "wb") as f:
    f.write(model.getvalue())
  proc = spm.SentencePieceProcessor(model_proto=model.getvalue())
  with open(output[:-len(".model")] + ".vocab", "w", encoding="utf-8") as f:
    for i in range(proc.GetPieceSize()):
      f.write(f"{proc.IdToPiece(i)}\t{proc.GetScore(i):g}\n")
  return output


def train_vocabulary_from_split_file(split_file: str, output: str,
                                     vocab_size: int = DEFAULT_VOCAB_SIZE,
                                     placeholder_units: bool = False) -> str:
  """Trains on the English and German sides of a built split file; with
  `placeholder_units`, the frequent placeholders and markup of that text are
  user-defined pieces (`placeholders.frequent_units`)."""
  texts = read_split_texts(split_file)
  units = ()
  if placeholder_units:
    from spec_cascade_jax.data import placeholders  # pylint: disable=g-import-not-at-top
    units = placeholders.frequent_units(texts)
  return train_vocabulary(texts, output, vocab_size, user_defined_symbols=units)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description="Train the demo SentencePiece vocabulary.")
  parser.add_argument("--train", action="store_true", help="train a vocabulary")
  parser.add_argument("--split_file", required=True, help="a train.jsonl.gz from build_gettext")
  parser.add_argument("--output", required=True, help="the .model path to write")
  parser.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB_SIZE)
  parser.add_argument("--placeholder_units", action="store_true",
                      help="make frequent format placeholders and markup single pieces")
  args = parser.parse_args(argv)
  if not args.train:
    parser.error("nothing to do: pass --train")
  train_vocabulary_from_split_file(args.split_file, args.output, args.vocab_size,
                                   args.placeholder_units)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main(sys.argv[1:])
