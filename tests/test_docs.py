"""Citations of the design document: `docs/design.md §N` names a section that
exists, and nothing cites the old design file that lived outside the
repository (upper-case name, OLD_NAME below) any more."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "design.md")

# Where citations live; generated and data folders are left out.
SKIP_DIRS = {".git", ".ci-venv", "__pycache__", ".pytest_cache", ".benchmarks", ".wheels",
             "runs", "tmp", "assets", "results", "docs"}
TEXT_FILES = (".py", ".md", ".sh", ".gin", ".ipynb", ".cfg", ".ini", ".toml", ".txt")
CITATION = re.compile(r"docs/design\.md[\s#]*§\s*(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", re.M)
OLD_NAME = "DESIGN" + ".md"   # spelt in two parts so that this file does not cite it
# Files that still cite OLD_NAME, each with the reason it is not edited yet.
OLD_CITATIONS_ALLOWED: dict[str, str] = {}


def _files():
  for folder, dirs, files in os.walk(ROOT):
    dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
    for f in sorted(files):
      if f.endswith(TEXT_FILES):
        path = os.path.join(folder, f)
        with open(path, encoding="utf-8", errors="replace") as fh:
          yield os.path.relpath(path, ROOT).replace(os.sep, "/"), fh.read()


def _sections() -> set[str]:
  with open(DOC, encoding="utf-8") as f:
    return set(HEADING.findall(f.read()))


def test_design_sections_are_numbered():
  sections = _sections()
  top = sorted(int(s) for s in sections if "." not in s)
  assert top == list(range(1, len(top) + 1)) and len(top) >= 6, top
  for s in sections:  # every subsection sits under a section that exists
    assert s.rsplit(".", 1)[0] in sections, s


def test_every_citation_names_a_section():
  sections = _sections()
  cited = {}
  for path, text in _files():
    for n in CITATION.findall(text):
      cited.setdefault(n, []).append(path)
  with open(DOC, encoding="utf-8") as f:   # the document's own cross-references
    for n in re.findall(r"§(\d+(?:\.\d+)*)", f.read()):
      cited.setdefault(n, []).append("docs/design.md")
  assert cited, "no docs/design.md citations found: is the scan looking in the right place?"
  missing = {n: paths for n, paths in cited.items() if n not in sections}
  assert not missing, f"citations of sections docs/design.md does not have: {missing}"


def test_no_old_design_citation_outside_docs():
  old = sorted(path for path, text in _files() if OLD_NAME in text)
  unexpected = [p for p in old if p not in OLD_CITATIONS_ALLOWED]
  assert not unexpected, f"cite docs/design.md §N instead of {OLD_NAME} in: {unexpected}"
  stale = sorted(set(OLD_CITATIONS_ALLOWED) - set(old))
  assert not stale, f"no longer cite {OLD_NAME}, remove from OLD_CITATIONS_ALLOWED: {stale}"


def test_readmes_test_command_is_what_ci_runs():
  """README.md's second command installs and runs exactly what .ci/run does."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  with open(os.path.join(root, ".ci", "run"), encoding="utf-8") as f:
    ci = f.read()
  block = readme.split("**The tests**", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
  steps = [s.strip() for s in block.split("&&")]
  assert steps[0] == 'pip install "torch==2.13.0"' and steps[1].startswith("pip install -e")
  assert steps[2].startswith("python -m pytest")
  for step in steps:
    command = step if step.startswith("python -m") else "python -m " + step
    assert f"\n{command}\n" in ci, f".ci/run does not run README's {step!r}"
