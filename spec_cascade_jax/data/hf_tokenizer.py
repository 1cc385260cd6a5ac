"""A Hugging Face checkpoint's own tokenizer, with the vocabulary interface of
`data/vocab.py` (encode / decode / eos_id / vocab_size), for decoder-only LMs.

    vocab = HFTokenizerVocabulary("/ckpt/gemma-2-2b")   # reads tokenizer.json
    ids = vocab.encode_prompt("English: Open file\\nGerman:")  # BOS as the model wants
    vocab.decode(generated_ids)                            # stops at the first EOS

Only `tokenizer.json` (the `tokenizers` library's format, which every Gemma,
Llama 3 and Qwen 2.5 directory carries) is read; transformers is not needed.
The end-of-sequence ids come from the directory's `generation_config.json`,
else `config.json` (`eos_token_id`, an int or a list: Llama 3.1 Instruct ends
on several), else the tokenizer's `eos_token` in `tokenizer_config.json`.
Whether a prompt starts with BOS is the tokenizer's own post-processor's
choice (Gemma and Llama add one, Qwen does not), as in `tokenizer(text)`.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

TOKENIZER_FILE = "tokenizer.json"


def is_tokenizer_dir(path: str) -> bool:
  return os.path.isdir(path) and os.path.isfile(os.path.join(path, TOKENIZER_FILE))


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _ids(value) -> tuple[int, ...]:
  if value is None:
    return ()
  return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


class HFTokenizerVocabulary:
  """The tokenizer of a local Hugging Face directory.

  Attributes:
    path: the directory.
    eos_ids: the ids that end a generation (tuple; `eos_id` is the first).
    tokenizer: the `tokenizers.Tokenizer`.
  """

  def __init__(self, path: str):
    if not is_tokenizer_dir(path):
      raise FileNotFoundError(
          f"{path!r} holds no {TOKENIZER_FILE}: pass the directory of a Hugging Face "
          "checkpoint that ships its fast tokenizer (Gemma, Llama 3 and Qwen 2.5 do), or "
          "save one there with transformers' `tokenizer.save_pretrained(path)`.")
    try:
      import tokenizers  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("a Hugging Face tokenizer needs the `tokenizers` package: "
                        "pip install 'spec_cascade_jax[lm]'") from e
    self.path = path
    self.tokenizer = tokenizers.Tokenizer.from_file(os.path.join(path, TOKENIZER_FILE))
    eos = ()
    for name in ("generation_config.json", "config.json"):
      eos = _ids(_read_json(os.path.join(path, name)).get("eos_token_id"))
      if eos:
        break
    if not eos:
      token = _read_json(os.path.join(path, "tokenizer_config.json")).get("eos_token")
      token = token.get("content") if isinstance(token, dict) else token
      tid = self.tokenizer.token_to_id(token) if token else None
      eos = () if tid is None else (tid,)
    if not eos:
      raise ValueError(f"{path!r}: no end-of-sequence id found (eos_token_id in "
                       "generation_config.json or config.json, or eos_token in "
                       "tokenizer_config.json); add one so that decoding knows where "
                       "an answer ends.")
    self.eos_ids = eos

  @property
  def eos_id(self) -> int:
    return self.eos_ids[0]

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(self.path))

  @property
  def fingerprint(self) -> str:
    """sha256 of tokenizer.json (what a model saved with it records)."""
    from spec_cascade_jax.data.fingerprint import file_fingerprint  # pylint: disable=g-import-not-at-top
    return file_fingerprint(os.path.realpath(os.path.join(self.path, TOKENIZER_FILE)))

  @property
  def vocab_size(self) -> int:
    """Ids the tokenizer knows (a model's embedding may hold more rows)."""
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def encode(self, s: str) -> list[int]:
    """Token ids of `s`, no special tokens."""
    return list(self.tokenizer.encode(s, add_special_tokens=False).ids)

  def encode_prompt(self, s: str) -> list[int]:
    """Token ids of a prompt, with the special tokens (BOS) the tokenizer adds."""
    return list(self.tokenizer.encode(s, add_special_tokens=True).ids)

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids` up to the first EOS, special tokens dropped."""
    out = []
    for i in ids:
      if int(i) in self.eos_ids:
        break
      out.append(int(i))
    return self.tokenizer.decode(out, skip_special_tokens=True)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [self.encode(t) for t in texts]

  def decode_batch(self, ids: Iterable[Iterable[int]]) -> list[str]:
    return [self.decode(x) for x in ids]

  def __repr__(self) -> str:
    return f"HFTokenizerVocabulary({self.path!r}, eos_ids={self.eos_ids})"
