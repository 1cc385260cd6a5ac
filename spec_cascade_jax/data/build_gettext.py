"""Builds the `gettext_en_de` corpora from German gettext catalogs.

    # The bundled gettext_en_de: packages fetched by data/debian_harvest.py
    python -m spec_cascade_jax.data.build_gettext --harvest_dir DIR \
        --output_dir spec_cascade_jax/assets/data/gettext_en_de --heldout_buckets 200
    # Any catalogs at hand (this machine's, by default)
    python -m spec_cascade_jax.data.build_gettext --output_dir DIR [CATALOG_DIR ...]

Inputs, harvest mode: `DIR/<package>/harvest.json` and the German catalogs
beside it, as `debian_harvest fetch` writes them (package, version and source
package known). Catalog-directory mode: every `*.mo` and `*.po` file in the
given directories (the owning package asked from dpkg). Without
directories the operating system's standard gettext locations are read:
`/usr/share/locale/de/LC_MESSAGES`, `/usr/share/locale/de_*/LC_MESSAGES`
(de_AT, de_CH, ...), the same under `/usr/share/locale-langpack`, and vim's
`/usr/share/vim/vim*/lang/de*/LC_MESSAGES`. A symbolic link to a catalog that is
already read is skipped (iso-codes ships `iso_639_3.mo -> iso_639-3.mo`), so
the same translations are not counted twice.

Cleaning rules, applied in this order (the manifest counts each drop):

1. header / empty: the header entry (msgid "") and entries with an empty
   msgstr (untranslated in a .po) are dropped.
2. fuzzy / obsolete (.po only; msgfmt leaves them out of .mo): dropped, a fuzzy
   translation is a guess the translator has not confirmed.
3. plural: kept as two pairs, msgid -> msgstr[0] and msgid_plural -> msgstr[1],
   but only when the catalog declares German's standard Plural-Forms
   (`nplurals=2; plural=(n != 1)`), where index 0 is the singular. Any other
   plural formula is dropped: the index would not say which form it is.
4. context (msgctxt): kept as provenance (the row's `context` field), never
   as text. The msgstr is a real translation of the msgid in one context; when
   several contexts translate the same English differently, rule 9 picks one.
   Translator credits (KDE's "Your names" / "Your emails", GNOME's
   "translator-credits") are dropped: names and addresses, not translations. gnupg writes its context into
   the msgid as a prefix ("|pinentry-label|_Yes"); a prefix `|name|` that the
   msgstr does not repeat is removed from the English.
5. mnemonics: accelerator markers are removed, with one rule for both sides.
   `&` is a marker when it starts a word and a letter follows ("&Open",
   "Replace &All"); "&&", "AT&T", "a&b" and entities ("&lt;", "&#234;") stay.
   `_` is a marker only when the message holds exactly one `_`, a letter follows
   it, and either it starts a word ("_File", "Save _As", "Formatierungs-_Pop":
   stripped on its own) or it sits inside a word, after a letter and before a
   lower-case letter ("Pre_view", "O_rt"; not "neuer_Name") AND the other side also has a marker in a
   DIFFERENT identifier (letters and digits around the `_`): an identifier such
   as "trap_handler" or "`order_end'" is copied unchanged into the translation
   or has no counterpart ("column_constraint" -> "Spalten-Constraint"), while a
   mnemonic moves with the translation ("Print Pre_view" -> "Druck_vorschau").
   "%s_%d", "KP_Right", "HOME_PHONE" and "_NET_WM_NAME" keep their underscores.
6. whitespace: unicode NFC, then every run of whitespace (newlines and tabs
   included) becomes one space, and both ends are stripped. Multi-line help
   texts become one line; their column layout carries no translation and
   SentencePiece's normaliser would collapse it anyway.
   printf / format placeholders (%s, %d, %1$s, %.*s, {name}) are kept as text.
   control characters: those that Python's regex whitespace class matches are
   whitespace to this rule too (TAB, LF, VT, FF, CR, the separators
   U+001C-U+001F and NEL U+0085); every other one (the rest of C0, DEL, C1)
   is kept on purpose, unchanged, and no rule drops a pair for it. They are
   parts of real messages of real programs that a translation must carry
   through like a placeholder: naev's colour codes (U+0007 and a letter:
   "<U+0007>oAborting hyperspace sequence."), IRC formatting in atheme, anope,
   znc and hexchat (U+0002 bold, U+0016 reverse), slrn's hotkey marker
   U+0001, the bell U+0007 in bash and debfoster. Rows of the bundled
   gettext_en_de with one on either side (tests/test_corpus.py checks these
   counts): train 188 (185 C0, 3 DEL/C1), validation 2 (2 C0, 0 DEL/C1),
   test 218 (215 C0, 3 DEL/C1); 0.03%, 0.02% and 0.64% of the rows. The 215
   C0 test rows are all anope's bold markers. The C1 rows are encoding damage
   kept with the rest: dopewars' cp1252 dash U+0096 (3 train rows) and
   vdr-plugin-vnsiserver's doubly encoded "ß" ("grÃ¶Ã<U+009F>e", 3 test
   rows); so is e2fsprogs' stray backspace U+0008 (1 train row). Models and
   scores see them all as text.
7. untranslated: pairs whose cleaned msgstr equals the cleaned msgid are
   dropped at every length. Short ones such as "OK" are legitimate, but here
   they are ~11.7k distinct pairs, mostly proper names from the ISO code lists
   (languages, regions), and would make a fifth of the corpus a copy task.
   Also dropped: pairs where one side has letters and the other has none
   (e.g. gnupg's translator notes translated as a number "25").
8. length: pairs with more than `--max_chars` (160) characters on either side
   are dropped: 99.9% of the rest fit in 64 tokens, so a model that stops
   when it should never runs into `max_new_tokens`.
   placeholders: pairs whose format placeholders differ as multisets
   (`data.placeholders`; "%s of %d" against "%2$d von %1$s" is the same) are
   dropped: a translation that loses or adds one breaks the program.
9. deduplicate by English: among the German candidates for one cleaned English
   text (counted once per catalog entry), the most frequent wins, ties go to
   the smallest string in code point order. The pair's provenance (`package`,
   `catalog` = the gettext domain, `context`) is the smallest one that gave
   the chosen German.

Splits, harvest mode: the test split is whole Debian source packages never
seen in training (`choose_test_sources`: sources in sha256 order, none with
more than 1% of the texts, until >= 30 sources and >= 5% of the texts are
theirs alone). An English text that any other package also has goes to
training, and only the other packages vote on its German (the test copies are
counted as "test_overlap"), so no English text is in two splits. The rest is
split by `bucket = int(sha256(en)[:8], 16) % 10000`: bucket < heldout ->
validation (in-domain), else train.
Splits, catalog-directory mode: by bucket alone; bucket < heldout -> test,
heldout <= bucket < 2 * heldout -> validation, else train.

Outputs in `--output_dir`: `{train,validation,test}.jsonl.gz` (one JSON object
per line with keys en, de, package, catalog, context; sorted by en; gzip level
9 with mtime 0, so the same inputs give the same bytes), `manifest.json`
(counts, packages, sha256 per split, drop counts per rule, pairs per package,
the test sources) and `SOURCES` (each package: version, source package,
split, pairs, licence from its copyright file, catalogs).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import unicodedata
from typing import Iterable, Iterator, Sequence

from spec_cascade_jax.data import placeholders

SPLITS = ("train", "validation", "test")
DEFAULT_MAX_CHARS = 160
# 330 of 10000 buckets: ~1,500 of the ~45k pairs on a Debian/Ubuntu machine
# with the usual German catalogs go to validation and as many to test.
DEFAULT_HELDOUT_BUCKETS = 330
# Harvest mode: whole source packages for test (see choose_test_sources).
DEFAULT_TEST_FRACTION = 0.05
DEFAULT_MIN_TEST_SOURCES = 30
DEFAULT_MAX_TEST_SHARE = 0.01
NUM_BUCKETS = 10000
GZIP_LEVEL = 9

DEFAULT_CATALOG_GLOBS = (
    "/usr/share/locale/de/LC_MESSAGES",
    "/usr/share/locale/de_*/LC_MESSAGES",
    "/usr/share/locale-langpack/de/LC_MESSAGES",
    "/usr/share/locale-langpack/de_*/LC_MESSAGES",
    "/usr/share/vim/vim*/lang/de*/LC_MESSAGES",
)
_GERMAN_PLURAL = re.compile(r"nplurals\s*=\s*2\s*;\s*plural\s*=\s*\(?\s*n\s*!=\s*1\s*\)?\s*;?")


@dataclasses.dataclass(frozen=True)
class Pair:
  """One cleaned translation pair and where it came from."""
  en: str
  de: str
  package: str   # Debian binary package ("unknown" for a catalog no package owns)
  catalog: str   # gettext domain, e.g. "coreutils"
  context: str   # the entry's msgctxt ("" when none): provenance, never text


@dataclasses.dataclass(frozen=True)
class Catalog:
  """One .mo/.po file and its owners."""
  path: str
  package: str
  source: str    # Debian source package: the unit of the package split

  @property
  def domain(self) -> str:
    return domain_of(self.path)


# ---------------------------------------------------------------------------
# Reading catalogs.


def default_catalog_dirs() -> list[str]:
  """The standard German gettext directories that exist on this machine."""
  dirs = []
  for pattern in DEFAULT_CATALOG_GLOBS:
    dirs.extend(sorted(d for d in glob.glob(pattern) if os.path.isdir(d)))
  return dirs


def find_catalogs(dirs: Sequence[str]) -> list[str]:
  """All .mo/.po files in `dirs`, sorted, with links to already-seen files skipped."""
  files, seen = [], set()
  for d in dirs:
    if not os.path.isdir(d):
      raise FileNotFoundError(f"catalog directory {d!r} does not exist; pass directories "
                              "that hold German .mo/.po files")
    for name in sorted(os.listdir(d)):
      if not name.endswith((".mo", ".po")):
        continue
      path = os.path.join(d, name)
      real = os.path.realpath(path)
      if real in seen or not os.path.isfile(real):
        continue
      seen.add(real)
      files.append(path)
  return files


def domain_of(path: str) -> str:
  """Catalog domain: the file name without extension ("git.mo" -> "git")."""
  return os.path.splitext(os.path.basename(os.path.realpath(path)))[0]


def _german_plural_forms(metadata: dict) -> bool:
  return bool(_GERMAN_PLURAL.search(metadata.get("Plural-Forms", "")))


def read_raw_entries(path: str, drops: collections.Counter
                     ) -> Iterator[tuple[str, str, str]]:
  """Yields raw (msgid, msgstr, msgctxt or "") of one catalog, after rules 1-4."""
  import polib  # pylint: disable=g-import-not-at-top  # only the builder needs it
  cat = polib.mofile(path) if path.endswith(".mo") else polib.pofile(path)
  german_plural = _german_plural_forms(cat.metadata)
  for e in cat:
    if not e.msgid:
      drops["header"] += 1
      continue
    if getattr(e, "obsolete", False):
      drops["obsolete"] += 1
      continue
    if "fuzzy" in (getattr(e, "flags", None) or []):
      drops["fuzzy"] += 1
      continue
    if e.msgctxt is not None:
      drops["context_kept"] += 1  # not a drop: counted for the record
    if e.msgid_plural:
      if not german_plural:
        drops["plural_unknown_forms"] += 1
        continue
      forms = e.msgstr_plural or {}
      for src, idx in ((e.msgid, 0), (e.msgid_plural, 1)):
        tgt = forms.get(idx, forms.get(str(idx), ""))
        if tgt:
          yield src, tgt, e.msgctxt or ""
        else:
          drops["empty"] += 1
      continue
    if not e.msgstr:
      drops["empty"] += 1
      continue
    yield e.msgid, e.msgstr, e.msgctxt or ""


# ---------------------------------------------------------------------------
# Cleaning.

# `&` at a word start, before a letter, not "&&" and not an entity (&lt; &#234;).
_AMP_MNEMONIC = re.compile(r"(?<![^\s(\[\"'])&(?=[^\W\d_])(?![A-Za-z]+;)")
_WS = re.compile(r"\s+")
# gnupg's disambiguation hint "|pinentry-label|_Yes" (a context in the msgid).
_HINT = re.compile(r"^\|[\w-]+\|")


def _underscore_marker(text: str) -> tuple[str, int, str] | None:
  """Classifies the only `_` of `text` as ("start"|"inner", index, word), else None."""
  if text.count("_") != 1:
    return None
  i = text.index("_")
  after = text[i + 1] if i + 1 < len(text) else ""
  if not after.isalpha():
    return None
  before = text[i - 1] if i > 0 else ""
  # The identifier around the marker: the run of letters, digits and `_`, so
  # that quotes ("`order_end'" against "»order_end«") do not make it differ.
  lo, hi = i, i + 1
  while lo > 0 and (text[lo - 1].isalnum()):
    lo -= 1
  while hi < len(text) and (text[hi].isalnum()):
    hi += 1
  word = text[lo:hi]
  if not before or before.isspace() or before in "([\"'-/":
    return ("start", i, word)
  if before.isalpha() and after.islower():
    return ("inner", i, word)
  return None  # "KP_Right", "HOME_PHONE", "%s_%d", "x2_y"


def strip_mnemonics(en: str, de: str) -> tuple[str, str]:
  """Removes accelerator markers from a pair (rule 5 of the module docstring)."""
  en, de = _AMP_MNEMONIC.sub("", en), _AMP_MNEMONIC.sub("", de)
  m_en, m_de = _underscore_marker(en), _underscore_marker(de)
  # A word-initial marker is safe alone; an inner one needs the other side's
  # marker in a different word (a translated label, not a copied identifier).
  cut_en = m_en is not None and (
      m_en[0] == "start" or (m_de is not None and m_de[2] != m_en[2]))
  cut_de = m_de is not None and (
      m_de[0] == "start" or (m_en is not None and m_en[2] != m_de[2]))
  if cut_en:
    en = en[:m_en[1]] + en[m_en[1] + 1:]
  if cut_de:
    de = de[:m_de[1]] + de[m_de[1] + 1:]
  return en, de


def normalize_whitespace(text: str) -> str:
  """NFC, whitespace runs (newlines too) -> one space, stripped (rule 6)."""
  return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


# KDE's and others' translator credits: names and e-mail addresses, not translations.
TRANSLATOR_CREDITS = frozenset({"Your names", "Your emails", "NAME OF TRANSLATORS",
                                "EMAIL OF TRANSLATORS", "translator-credits",
                                "translator_credits", "TRANSLATOR-CREDITS"})


def clean_pair(en: str, de: str, drops: collections.Counter,
               max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, str] | None:
  """Rules 5-8 on one raw pair; None (and a counted reason) when it is dropped."""
  if en.strip() in TRANSLATOR_CREDITS:
    drops["translator_credits"] += 1
    return None
  if _HINT.match(en) and not _HINT.match(de):
    en = _HINT.sub("", en)
  en, de = strip_mnemonics(en, de)
  en, de = normalize_whitespace(en), normalize_whitespace(de)
  if not en or not de:
    drops["empty"] += 1
    return None
  if en == de:
    drops["untranslated"] += 1
    return None
  if any(c.isalpha() for c in en) != any(c.isalpha() for c in de):
    drops["letters_one_side"] += 1
    return None
  if len(en) > max_chars or len(de) > max_chars:
    drops["too_long"] += 1
    return None
  if not placeholders.same_placeholders(en, de):
    drops["placeholders_differ"] += 1
    return None
  return en, de


Candidate = tuple  # (en, de, Catalog, context)


def choose_test_sources(candidates: Sequence[Candidate], fraction: float,
                        min_sources: int, max_share: float) -> frozenset[str]:
  """Whole source packages for the unseen-package test split.

  Sources are taken in the order of sha256(name) (a fixed pseudo-random order),
  skipping any that holds more than `max_share` of the distinct English texts
  (one giant package would make the split one package), until at least
  `min_sources` are taken and the English texts found ONLY in taken sources
  reach `fraction` of all distinct English texts.
  """
  texts_of: dict[str, set] = collections.defaultdict(set)
  for en, _, cat, _ in candidates:
    texts_of[cat.source].add(en)
  owners = collections.Counter()
  for texts in texts_of.values():
    owners.update(texts)
  total = len(owners)
  order = sorted(texts_of, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
  chosen, only_test = [], 0
  for name in order:
    if only_test >= fraction * total and len(chosen) >= min_sources:
      break
    if len(texts_of[name]) > max_share * total:
      continue
    chosen.append(name)
    for en in texts_of[name]:
      owners[en] -= 1
      only_test += owners[en] == 0
  if only_test < fraction * total or len(chosen) < min_sources:
    raise ValueError(f"only {len(chosen)} sources with {only_test} of {total} texts qualify for "
                     f"the test split; lower test_fraction/min_test_sources or add packages")
  return frozenset(chosen)


def deduplicate(candidates: Iterable[Candidate], drops: collections.Counter,
                test_sources: frozenset[str] = frozenset()) -> list[tuple[Pair, bool]]:
  """Rule 9: one pair per English text; (pair, in_test) sorted by English.

  The German is the most frequent candidate, ties to the smallest string. With
  `test_sources`, an English text belongs to the test split only when every
  catalog that has it is in a test source; otherwise only the other catalogs
  vote and the test sources' copies are dropped (counted as "test_overlap"),
  so no English text is in two splits. Provenance (package, catalog, context)
  is the smallest one that gave the chosen German.
  """
  by_en: dict[str, list] = collections.defaultdict(list)
  n = 0
  for en, de, cat, ctx in candidates:
    n += 1
    by_en[en].append((de, cat, ctx))
  out, overlap = [], 0
  for en in sorted(by_en):
    cands = by_en[en]
    in_test = bool(test_sources) and all(c.source in test_sources for _, c, _ in cands)
    if test_sources and not in_test:
      own = [x for x in cands if x[1].source not in test_sources]
      overlap += len(cands) - len(own)
      cands = own
    votes = collections.Counter(de for de, _, _ in cands)
    de = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    package, catalog, ctx = min((c.package, c.domain, x) for d, c, x in cands if d == de)
    out.append((Pair(en=en, de=de, package=package, catalog=catalog, context=ctx), in_test))
  drops["duplicate"] += n - len(out) - overlap
  if overlap:
    drops["test_overlap"] += overlap
  return out


def bucket_of(en: str) -> int:
  """A text's bucket in [0, NUM_BUCKETS), from its sha256 only."""
  return int(hashlib.sha256(en.encode("utf-8")).hexdigest()[:8], 16) % NUM_BUCKETS


def split_of(en: str, heldout_buckets: int = DEFAULT_HELDOUT_BUCKETS) -> str:
  """The split of an English text, from its sha256 only (catalog-directory mode)."""
  if not 0 < 2 * heldout_buckets < NUM_BUCKETS:
    raise ValueError(f"heldout_buckets={heldout_buckets} must be in (0, {NUM_BUCKETS // 2})")
  bucket = bucket_of(en)
  if bucket < heldout_buckets:
    return "test"
  if bucket < 2 * heldout_buckets:
    return "validation"
  return "train"


# ---------------------------------------------------------------------------
# Sources and licences.


def _dpkg_owner(path: str) -> str | None:
  """Debian package that owns `path` (tries the link and its target), or None."""
  for p in dict.fromkeys((path, os.path.realpath(path))):
    try:
      out = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True,
                           check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
      return None
    if out.returncode == 0 and out.stdout:
      line = out.stdout.splitlines()[0]
      return line.split(":")[0].split(",")[0].strip()
  return None


_LICENCE_HINTS = (
    ("GNU Lesser General Public License", "LGPL"),
    ("GNU Library General Public License", "LGPL"),
    ("GNU General Public License", "GPL"),
    ("BSD", "BSD"),
    ("MIT", "MIT"),
    ("PostgreSQL", "PostgreSQL"),
    ("Permission is hereby granted", "permissive (MIT/X11 style)"),
)


def licence_summary(package: str, doc_root: str = "/usr/share/doc") -> str:
  """Short licence of a Debian package from its copyright file.

  DEP-5 files: the distinct `License:` short names of `Files:` stanzas, first
  three in file order. Free-form files: the licence families they name.
  """
  path = os.path.join(doc_root, package, "copyright")
  if not os.path.isfile(path):
    return "unknown (no copyright file)"
  with open(path, encoding="utf-8", errors="replace") as f:
    text = f.read()
  names = []
  for stanza in re.split(r"\n\s*\n", text):
    if not re.search(r"^Files:", stanza, re.M):
      continue
    m = re.search(r"^License:[ \t]*(\S[^\n]*)", stanza, re.M)
    if m and m.group(1).strip() not in names:
      names.append(m.group(1).strip())
  if names:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
  # Whole words only: "MIT" must not match "PERMITTED".
  found = [short for long, short in _LICENCE_HINTS
           if re.search(r"\b" + re.escape(long) + r"\b", text)]
  if found:
    return " / ".join(dict.fromkeys(found)) + " (free-form copyright file)"
  return "see copyright file"


def sources_text(catalogs: Sequence[Catalog], package_counts: dict[str, int],
                 licences: dict[str, str], test_sources: frozenset[str] = frozenset(),
                 versions: dict[str, str] | None = None) -> str:
  """The SOURCES file: one line per package, with its licence and catalogs."""
  lines = [
      "Sources of the gettext_en_de corpus (built by spec_cascade_jax.data.build_gettext).",
      "Each pair comes from a German gettext catalog of a free software package;",
      "the translations are the work of that package's translators and keep",
      "the package's licence (from usr/share/doc/<package>/copyright).",
      "",
      "package | version | source package | split | pairs | licence | catalogs",
  ]
  by_pkg: dict[str, list[Catalog]] = collections.defaultdict(list)
  for c in catalogs:
    by_pkg[c.package].append(c)
  for pkg in sorted(by_pkg):
    cats = by_pkg[pkg]
    split = "test" if cats[0].source in test_sources else "train/validation"
    shown = sorted({c.domain for c in cats})
    lines.append(f"{pkg} | {(versions or {}).get(pkg, '-')} | {cats[0].source} | {split} | "
                 f"{package_counts.get(pkg, 0)} | {licences.get(pkg, 'unknown')} | "
                 f"{', '.join(shown)}")
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Writing.


def _write_gz_jsonl(path: str, rows: Sequence[dict]) -> None:
  """Byte-reproducible gzip: no file name, mtime 0, fixed level."""
  payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
  with open(path, "wb") as raw:
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                       compresslevel=GZIP_LEVEL) as gz:
      gz.write(payload.encode("utf-8"))


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def directory_catalogs(dirs: Sequence[str]) -> list[Catalog]:
  """Catalog-directory mode: files owned by installed packages (dpkg -S)."""
  out = []
  for path in find_catalogs(dirs):
    owner = _dpkg_owner(path) or "unknown"
    out.append(Catalog(path=path, package=owner, source=owner))
  return out


def harvested_catalogs(harvest_dir: str) -> tuple[list[Catalog], dict[str, str], dict[str, str]]:
  """Harvest mode (`debian_harvest fetch`): catalogs, licences and versions per package."""
  from spec_cascade_jax.data import debian_harvest  # pylint: disable=g-import-not-at-top
  catalogs, licences, versions = [], {}, {}
  for pkg in sorted(os.listdir(harvest_dir)):
    meta_path = os.path.join(harvest_dir, pkg, "harvest.json")
    if not os.path.isfile(meta_path):
      continue  # an unfinished download (*.part) or a stray file
    with open(meta_path, encoding="utf-8") as f:
      meta = json.load(f)
    if debian_harvest.excluded(meta["package"]):
      raise ValueError(f"{meta_path}: package {meta['package']!r} is excluded "
                       f"({debian_harvest.EXCLUDED_NAMES}); delete it from the harvest")
    versions[meta["package"]] = meta["version"]
    licences[meta["package"]] = licence_summary(
        meta["package"], os.path.join(harvest_dir, pkg, "usr", "share", "doc"))
    for rel in meta["catalogs"]:
      if not debian_harvest.excluded(os.path.basename(rel)):
        catalogs.append(Catalog(path=os.path.join(harvest_dir, pkg, rel),
                                package=meta["package"], source=meta["source"]))
  if not catalogs:
    raise FileNotFoundError(f"no harvested catalogs in {harvest_dir!r}; run "
                            "`python -m spec_cascade_jax.data.debian_harvest fetch` first")
  return catalogs, licences, versions


def build_candidates(catalogs: Sequence[Catalog], max_chars: int = DEFAULT_MAX_CHARS
                     ) -> tuple[list[Candidate], collections.Counter]:
  """Reads and cleans `catalogs` (rules 1-8); returns candidates and drop counts."""
  drops: collections.Counter = collections.Counter()
  candidates = []
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  for cat in tqdm(catalogs, desc="catalogs", disable=len(catalogs) < 100):
    try:
      entries = list(read_raw_entries(cat.path, drops))
    except (OSError, ValueError) as e:  # a corrupt catalog: counted, not fatal
      drops["unreadable_catalog"] += 1
      print(f"skipping {cat.path}: {e}", file=sys.stderr)
      continue
    for en, de, ctx in entries:
      drops["raw_pairs"] += 1
      cleaned = clean_pair(en, de, drops, max_chars)
      if cleaned is not None:
        candidates.append((cleaned[0], cleaned[1], cat, ctx))
  return candidates, drops


def build(output_dir: str, catalog_dirs: Sequence[str] | None = None, *,
          harvest_dir: str | None = None,
          max_chars: int = DEFAULT_MAX_CHARS,
          heldout_buckets: int = DEFAULT_HELDOUT_BUCKETS,
          test_fraction: float = DEFAULT_TEST_FRACTION,
          min_test_sources: int = DEFAULT_MIN_TEST_SOURCES,
          max_test_share: float = DEFAULT_MAX_TEST_SHARE,
          write_sources: bool = True) -> dict:
  """Builds the corpus into `output_dir`; returns the manifest dict.

  Two modes:
    harvest_dir: packages fetched by `debian_harvest` (the bundled corpus).
      The test split is whole source packages (`choose_test_sources`);
      validation is `heldout_buckets` of the rest, by hash of the English.
    catalog_dirs (or none: this machine's locale directories): test and
      validation are `heldout_buckets` each, by hash of the English.
  """
  licences, versions = {}, {}
  if harvest_dir is not None:
    if catalog_dirs:
      raise ValueError("pass catalog directories or harvest_dir, not both")
    catalogs, licences, versions = harvested_catalogs(harvest_dir)
  else:
    dirs = list(catalog_dirs) if catalog_dirs else default_catalog_dirs()
    if not dirs:
      raise FileNotFoundError(
          "no German gettext catalog directory found (looked at "
          f"{', '.join(DEFAULT_CATALOG_GLOBS)}); pass directories on the command line")
    catalogs = directory_catalogs(dirs)
    if not catalogs:
      raise FileNotFoundError(f"no .mo/.po files in {dirs}")
    licences = {c.package: licence_summary(c.package) for c in catalogs
                if c.package != "unknown"}
  candidates, drops = build_candidates(catalogs, max_chars)
  test_sources = frozenset()
  if harvest_dir is not None:
    test_sources = choose_test_sources(candidates, test_fraction, min_test_sources,
                                       max_test_share)
  pairs = deduplicate(candidates, drops, test_sources)
  rows = {s: [] for s in SPLITS}
  for p, in_test in pairs:  # already sorted by en
    if harvest_dir is None:
      split = split_of(p.en, heldout_buckets)
    else:
      split = "test" if in_test else (
          "validation" if bucket_of(p.en) < heldout_buckets else "train")
    rows[split].append(dataclasses.asdict(p))
  os.makedirs(output_dir, exist_ok=True)
  files = {}
  for s in SPLITS:
    name = f"{s}.jsonl.gz"
    path = os.path.join(output_dir, name)
    _write_gz_jsonl(path, rows[s])
    files[s] = {"file": name, "count": len(rows[s]), "bytes": os.path.getsize(path),
                "sha256": _sha256(path),
                "packages": len({r["package"] for r in rows[s]})}
  package_counts = collections.Counter(p.package for p, _ in pairs)
  manifest = {
      "name": "gettext_en_de",
      "fields": [f.name for f in dataclasses.fields(Pair)],
      "mode": "harvest" if harvest_dir is not None else "directories",
      "splits": files,
      "total": len(pairs),
      "max_chars": max_chars,
      "heldout_buckets": heldout_buckets,
      "num_buckets": NUM_BUCKETS,
      "num_catalogs": len(catalogs),
      "num_packages": len({c.package for c in catalogs}),
      "drops": dict(sorted(drops.items())),
      "pairs_per_package": dict(sorted(package_counts.items())),
  }
  if harvest_dir is not None:
    manifest["test_split"] = {"fraction": test_fraction, "min_sources": min_test_sources,
                              "max_share": max_test_share,
                              "sources": sorted(test_sources)}
  with open(os.path.join(output_dir, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1, sort_keys=True, ensure_ascii=False)
    f.write("\n")
  if write_sources:
    with open(os.path.join(output_dir, "SOURCES"), "w", encoding="utf-8") as f:
      f.write(sources_text(catalogs, package_counts, licences, test_sources, versions))
  return manifest


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("catalog_dirs", nargs="*",
                      help="directories with German .mo/.po files (default: system locale dirs)")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--harvest_dir", default=None,
                      help="packages fetched by spec_cascade_jax.data.debian_harvest")
  parser.add_argument("--test_fraction", type=float, default=DEFAULT_TEST_FRACTION)
  parser.add_argument("--min_test_sources", type=int, default=DEFAULT_MIN_TEST_SOURCES)
  parser.add_argument("--max_test_share", type=float, default=DEFAULT_MAX_TEST_SHARE)
  parser.add_argument("--max_chars", type=int, default=DEFAULT_MAX_CHARS)
  parser.add_argument("--heldout_buckets", type=int, default=DEFAULT_HELDOUT_BUCKETS,
                      help=f"buckets of {NUM_BUCKETS} for test and again for validation")
  parser.add_argument("--no_sources", action="store_true", help="skip the SOURCES file")
  parser.add_argument("--vocab_output", default=None,
                      help="also train the SentencePiece vocabulary to this .model path")
  args = parser.parse_args(argv)
  t0 = time.time()
  manifest = build(args.output_dir, args.catalog_dirs, harvest_dir=args.harvest_dir,
                   max_chars=args.max_chars, heldout_buckets=args.heldout_buckets,
                   test_fraction=args.test_fraction, min_test_sources=args.min_test_sources,
                   max_test_share=args.max_test_share, write_sources=not args.no_sources)
  counts = {s: manifest["splits"][s]["count"] for s in SPLITS}
  print(f"built {manifest['total']} pairs {counts} in {time.time() - t0:.1f}s")
  if args.vocab_output:
    from spec_cascade_jax.data import vocab  # pylint: disable=g-import-not-at-top
    t0 = time.time()
    vocab.train_vocabulary_from_split_file(
        os.path.join(args.output_dir, "train.jsonl.gz"), args.vocab_output)
    print(f"trained vocabulary {args.vocab_output} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
  main(sys.argv[1:])
