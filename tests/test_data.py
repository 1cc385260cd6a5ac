"""The gettext corpus builder (cleaning rules, determinism) and the shipped copy."""

from __future__ import annotations

import hashlib
import os

import polib  # a core dependency (setup.py): missing, these tests fail
import pytest

from spec_cascade_jax.data import build_gettext as bg
from spec_cascade_jax.data import dataset

GERMAN_PLURAL = "nplurals=2; plural=(n != 1);"


def _catalog(entries, plural_forms=GERMAN_PLURAL):
  po = polib.POFile()
  po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Plural-Forms": plural_forms}
  for e in entries:
    po.append(e)
  return po


def _write_fixture(root):
  """Two catalog dirs: a .mo (de) and a .po (de_AT) with every rule's case."""
  de = os.path.join(root, "de", "LC_MESSAGES")
  at = os.path.join(root, "de_AT", "LC_MESSAGES")
  os.makedirs(de)
  os.makedirs(at)
  E = polib.POEntry  # pylint: disable=invalid-name
  mo = _catalog([
      E(msgid="_File", msgstr="_Datei"),
      E(msgid="Print Pre_view", msgstr="Druck_vorschau"),
      E(msgid="&Open", msgstr="Ö&ffnen"),                     # mid-word & stays (de)
      E(msgid="Save &As", msgstr="Speichern &unter"),
      E(msgid="trap_handler: bad signal %d", msgstr="trap_handler: Falsches Signal %d."),
      E(msgid="KP_Right", msgstr="NB_Rechts"),
      E(msgid="a && b or AT&T &lt;x&gt;", msgstr="a && b oder AT&T &lt;x&gt;"),
      E(msgid="%d file", msgid_plural="%d files", msgstr_plural={0: "%d Datei", 1: "%d Dateien"}),
      E(msgid="Open", msgctxt="verb", msgstr="Öffnen"),
      E(msgid="Open", msgctxt="adjective", msgstr="Offen"),
      E(msgid="OK", msgstr="OK"),                             # untranslated / identical
      E(msgid="Abau", msgstr="Abau"),
      E(msgid="  Line one\n\tline   two  ", msgstr="Zeile eins\nZeile  zwei\n"),
      E(msgid="%1$s of {name}: %s", msgstr="%1$s von {name}: %s"),
      E(msgid="Cancel", msgstr="Abbrechen"),
      E(msgid="x" * 300, msgstr="y" * 300),                   # too long
      E(msgid="22 translator: see notes", msgstr="25"),       # letters on one side
  ])
  mo.save_as_mofile(os.path.join(de, "toolkit.mo"))
  os.symlink("toolkit.mo", os.path.join(de, "toolkit_link.mo"))
  fuzzy = E(msgid="Close", msgstr="Schließen (unsicher)")
  fuzzy.flags.append("fuzzy")
  obsolete = E(msgid="Old", msgstr="Alt")
  obsolete.obsolete = True
  po = _catalog([
      fuzzy,
      obsolete,
      E(msgid="Empty", msgstr=""),
      E(msgid="Cancel", msgstr="Abbruch"),                    # 1 vote against 2
      E(msgid="Help", msgstr="Hilfe"),
      E(msgid="%d item", msgid_plural="%d items",
        msgstr_plural={0: "%d Element", 1: "%d Elemente", 2: "x"}),
  ], plural_forms="nplurals=3; plural=(n==1 ? 0 : n==2 ? 1 : 2);")
  po.save(os.path.join(at, "apps.po"))
  po2 = _catalog([E(msgid="Cancel", msgstr="Abbrechen"), E(msgid="Help", msgstr="Hilfe!")])
  po2.save(os.path.join(at, "zapps.po"))
  return [de, at]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("catalogs"))
  dirs = _write_fixture(root)
  out = str(tmp_path_factory.mktemp("out"))
  manifest = bg.build(out, dirs, heldout_buckets=3000, write_sources=True)
  rows = {s: dataset.load_split(s, data_dir=out) for s in bg.SPLITS}
  by_en = {r["en"]: r for s in bg.SPLITS for r in rows[s]}
  return dict(dirs=dirs, out=out, manifest=manifest, rows=rows, by_en=by_en)


def test_build_is_byte_reproducible_and_order_independent(built, tmp_path):
  bg.build(str(tmp_path / "a"), built["dirs"][::-1], heldout_buckets=3000)
  for s in bg.SPLITS:
    name = f"{s}.jsonl.gz"
    with open(os.path.join(built["out"], name), "rb") as f1, open(tmp_path / "a" / name, "rb") as f2:
      assert f1.read() == f2.read(), name
  with open(tmp_path / "a" / "manifest.json", "rb") as f1, \
       open(os.path.join(built["out"], "manifest.json"), "rb") as f2:
    assert f1.read() == f2.read()


def test_gzip_header_has_no_name_or_time(built):
  with open(os.path.join(built["out"], "train.jsonl.gz"), "rb") as f:
    head = f.read(10)
  assert head[3] == 0                       # FLG: no FNAME
  assert head[4:8] == b"\0\0\0\0"           # MTIME 0


def test_mnemonics(built):
  by_en = built["by_en"]
  assert by_en["File"]["de"] == "Datei"
  assert by_en["Print Preview"]["de"] == "Druckvorschau"
  # "Open" has three one-vote candidates ("Ö&ffnen", mid-word & kept, "Öffnen",
  # "Offen"): the smallest in code point order wins.
  assert by_en["Open"]["de"] == "Offen"
  assert by_en["Save As"]["de"] == "Speichern unter"
  # Identifiers, key names, "&&", AT&T and entities are not mnemonics.
  assert by_en["trap_handler: bad signal %d"]["de"] == "trap_handler: Falsches Signal %d."
  assert by_en["KP_Right"]["de"] == "NB_Rechts"
  assert by_en["a && b or AT&T &lt;x&gt;"]["de"] == "a && b oder AT&T &lt;x&gt;"


def test_mnemonic_rules_directly():
  assert bg.strip_mnemonics("Op_acity:", "_Deckkraft:") == ("Opacity:", "Deckkraft:")
  assert bg.strip_mnemonics("Copy _Location", "O_rt kopieren") == ("Copy Location", "Ort kopieren")
  # One-sided inner underscore: an identifier, kept on both sides.
  assert bg.strip_mnemonics("column_constraint", "Spalten-Constraint") == (
      "column_constraint", "Spalten-Constraint")
  assert bg.strip_mnemonics("new_name", "neuer_Name") == ("new_name", "neuer_Name")
  assert bg.strip_mnemonics("missing `order_end'", "»order_end« fehlt") == (
      "missing `order_end'", "»order_end« fehlt")
  assert bg.strip_mnemonics("%s_%d", "%s_%d") == ("%s_%d", "%s_%d")
  assert bg.strip_mnemonics("_NET_WM_NAME", "_NET_WM_NAME") == ("_NET_WM_NAME", "_NET_WM_NAME")
  assert bg.strip_mnemonics("&Yes\n&No", "&Ja\n&Nein") == ("Yes\nNo", "Ja\nNein")
  assert bg.strip_mnemonics("2>&1 &#234;", "2>&1 &#234;") == ("2>&1 &#234;", "2>&1 &#234;")


def test_plural_context_fuzzy_empty_untranslated(built):
  by_en, drops = built["by_en"], built["manifest"]["drops"]
  # German plural formula: singular and plural both kept.
  assert by_en["%d file"]["de"] == "%d Datei"
  assert by_en["%d files"]["de"] == "%d Dateien"
  # Unknown plural formula: dropped whole.
  assert "%d item" not in by_en and "%d items" not in by_en
  assert drops["plural_unknown_forms"] == 1
  # Context: both contexts counted, one English kept.
  assert drops["context_kept"] == 2
  assert "Close" not in by_en and drops["fuzzy"] == 1
  assert "Old" not in by_en and drops["obsolete"] == 1
  assert "Empty" not in by_en
  assert "OK" not in by_en and "Abau" not in by_en and drops["untranslated"] == 2
  assert "x" * 300 not in by_en and drops["too_long"] == 1
  assert "22 translator: see notes" not in by_en and drops["letters_one_side"] == 1


def test_whitespace_and_placeholders(built):
  by_en = built["by_en"]
  assert by_en["Line one line two"]["de"] == "Zeile eins Zeile zwei"
  assert by_en["%1$s of {name}: %s"]["de"] == "%1$s von {name}: %s"


def test_dedup_most_frequent_then_smallest(built):
  by_en = built["by_en"]
  # "Abbrechen" 2 votes (toolkit.mo, zapps.po; the symlink is not read twice)
  # against "Abbruch" 1 vote.
  assert by_en["Cancel"]["de"] == "Abbrechen"
  assert by_en["Cancel"]["catalog"] == "toolkit"
  # Tie 1:1 -> smallest string in code point order.
  assert by_en["Help"]["de"] == "Hilfe"
  assert by_en["Help"]["catalog"] == "apps"
  assert by_en["File"]["catalog"] == "toolkit"   # not "toolkit_link": links are skipped


def test_split_assignment_by_hash(built):
  for s in bg.SPLITS:
    for r in built["rows"][s]:
      assert bg.split_of(r["en"], 3000) == s
      bucket = int(hashlib.sha256(r["en"].encode()).hexdigest()[:8], 16) % bg.NUM_BUCKETS
      assert (bucket < 3000) == (s == "test")
  assert bg.split_of("Cancel") == bg.split_of("Cancel")
  with pytest.raises(ValueError, match="heldout_buckets"):
    bg.split_of("x", 6000)


def test_rows_sorted_and_manifest_counts(built):
  m = built["manifest"]
  assert sum(len(v) for v in built["rows"].values()) == m["total"]
  for s in bg.SPLITS:
    ens = [r["en"] for r in built["rows"][s]]
    assert ens == sorted(ens)
    assert m["splits"][s]["count"] == len(ens)
  with open(os.path.join(built["out"], "SOURCES"), encoding="utf-8") as f:
    text = f.read()
  assert "| apps, toolkit, zapps" in text   # the unowned catalogs, one line
  assert built["out"] not in text  # no temp paths in SOURCES


def test_missing_directory_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    bg.build(str(tmp_path / "o"), [str(tmp_path / "nope")])


def test_load_split_errors(tmp_path):
  with pytest.raises(ValueError, match="unknown split"):
    dataset.load_split("dev")
  with pytest.raises(FileNotFoundError, match="build_gettext"):
    dataset.load_split("train", data_dir=str(tmp_path))
