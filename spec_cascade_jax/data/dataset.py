"""Reads the shipped `gettext_en_de` splits (pure Python: no TensorFlow).

The frozen copy lives in `spec_cascade_jax/assets/data/gettext_en_de/`, built by
`spec_cascade_jax.data.build_gettext`; see that module for the cleaning rules.

    rows = load_split("validation")   # [{"en", "de", "package", "catalog", "context"}, ...]
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os

SPLITS = ("train", "validation", "test")
_ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "assets", "data")
# The bundled corpus by name: 651k pairs from the German catalogs of 1,905
# Debian packages, with an in-domain validation split and a test split of
# whole packages never seen in training (data/debian_harvest.py,
# build_gettext.py --harvest_dir).
CORPORA = {name: os.path.join(_ASSETS, name) for name in ("gettext_en_de",)}
DATA_DIR = CORPORA["gettext_en_de"]
# The bundled vocabulary trained on each corpus (data/vocab.py): what its
# seqio task tokenizes with, and the main job's default for it.
CORPUS_VOCABULARIES = {"gettext_en_de": "gettext"}


def corpus_dir(name_or_dir: str) -> str:
  """A bundled corpus name (see CORPORA) or a directory written by build_gettext."""
  return CORPORA.get(name_or_dir, name_or_dir)


def load_manifest(data_dir: str = DATA_DIR) -> dict:
  """The manifest.json of a built corpus (counts, sha256 per split); `data_dir`
  is a directory or a bundled corpus name."""
  data_dir = corpus_dir(data_dir)
  path = os.path.join(data_dir, "manifest.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"no manifest.json in {data_dir!r}; build the corpus with "
        "`python -m spec_cascade_jax.data.build_gettext --output_dir DIR`")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


@functools.lru_cache(maxsize=8)
def _load(split: str, data_dir: str, verify: bool) -> tuple[dict, ...]:
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
  path = os.path.join(data_dir, f"{split}.jsonl.gz")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path!r} is missing; rebuild the corpus with "
                            "`python -m spec_cascade_jax.data.build_gettext`")
  with open(path, "rb") as f:
    raw = f.read()
  if verify:
    expected = load_manifest(data_dir)["splits"][split]["sha256"]
    got = hashlib.sha256(raw).hexdigest()
    if got != expected:
      raise ValueError(f"{path!r} has sha256 {got}, manifest says {expected}: the file was "
                       "changed; rebuild it with spec_cascade_jax.data.build_gettext")
  text = gzip.decompress(raw).decode("utf-8")
  return tuple(json.loads(line) for line in text.splitlines() if line)


def load_split(split: str, data_dir: str = DATA_DIR, verify: bool = True) -> list[dict]:
  """Rows of one split, in the shipped (sorted by English) order.

  Args:
    split: "train", "validation" or "test".
    data_dir: a directory written by build_gettext, or a bundled corpus name
      (CORPORA); default: gettext_en_de.
    verify: check the file's sha256 against manifest.json first.

  Returns:
    list of {"en", "de", and provenance: "package", "catalog", "context" (harvest
    mode) or "source" (catalog-directory mode)}; a fresh list of fresh dicts
    each call (the parsed file is cached).
  """
  return [dict(r) for r in _load(split, os.path.abspath(corpus_dir(data_dir)), verify)]
