"""Format placeholders and markup in software messages: one definition for all.

A translation must carry every format placeholder of its source over unchanged
(`%s`, `%1$d`, `%(name)s`, `{0}`, `{name}`, Qt's `%1`); otherwise the program
prints garbage or crashes. The same definition is used to

- drop corpus pairs whose placeholders differ (`build_gettext`),
- make placeholders and markup single vocabulary pieces (`vocab`),
- score outputs: `preservation_rate`, and `mismatches` for which ones are lost.

Positional printf indices are ignored when comparing (`%2$s %1$d` carries the
same placeholders as `%d %s`); the order may change in translation, the
multiset may not.
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

# printf (C, Python %-format, glibc %m), Python named, Qt/KDE %1..%99,
# brace formats (Python str.format, C#, ICU simple), and the literal "%%".
# No space flag: "100 % sicher" is prose, not "% s".
PLACEHOLDER = re.compile(
    r"%%"
    r"|%\(\w+\)[-+#0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
    r"|%(?:\d+\$)?[-+#0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspnm]"
    r"|%\d{1,2}(?!\d)"
    r"|\{\w{0,32}(?:[:!][^{}\s]{0,16})?\}")
# Markup that translators copy: HTML tags without attributes and entities.
MARKUP = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]{0,9}\s?/?>|&(?:[a-zA-Z]{2,8}|#\d{2,5});")
_POSITION = re.compile(r"^%\d+\$")


def normalize(placeholder: str) -> str:
  """`%2$s` -> `%s`: the positional index does not change what is printed."""
  return _POSITION.sub("%", placeholder)


def placeholders(text: str) -> collections.Counter:
  """The multiset of (normalized) format placeholders in `text`."""
  return collections.Counter(normalize(m) for m in PLACEHOLDER.findall(text))


def same_placeholders(source: str, translation: str) -> bool:
  """True when `translation` carries exactly the placeholders of `source`."""
  return placeholders(source) == placeholders(translation)


def preservation_rate(sources: Sequence[str], outputs: Sequence[str]) -> float:
  """Fraction of outputs with exactly their source's placeholders, among the
  sources that have any (1.0 when none has)."""
  if len(sources) != len(outputs):
    raise ValueError(f"{len(sources)} sources but {len(outputs)} outputs")
  pairs = [(s, o) for s, o in zip(sources, outputs) if placeholders(s)]
  if not pairs:
    return 1.0
  return sum(same_placeholders(s, o) for s, o in pairs) / len(pairs)


def mismatches(sources: Sequence[str], outputs: Sequence[str], top: int = 10) -> dict:
  """Which placeholders outputs get wrong: `missing` counts each (normalized)
  placeholder of a source that its output lacks, `extra` each one an output
  adds; the `top` most frequent of each, most frequent first."""
  if len(sources) != len(outputs):
    raise ValueError(f"{len(sources)} sources but {len(outputs)} outputs")
  missing: collections.Counter = collections.Counter()
  extra: collections.Counter = collections.Counter()
  for s, o in zip(sources, outputs):
    want, got = placeholders(s), placeholders(o)
    missing.update(want - got)
    extra.update(got - want)
  return {"missing": dict(missing.most_common(top)), "extra": dict(extra.most_common(top))}


def frequent_units(texts: Iterable[str], min_count: int = 30, limit: int = 400) -> list[str]:
  """Placeholders and markup occurring at least `min_count` times, most frequent
  first (ties in code point order), at most `limit`: the vocabulary's
  user-defined pieces."""
  counts: collections.Counter = collections.Counter()
  for t in texts:
    counts.update(PLACEHOLDER.findall(t))
    counts.update(MARKUP.findall(t))
  units = [u for u, c in counts.items() if c >= min_count and u.strip() == u]
  units.sort(key=lambda u: (-counts[u], u))
  return units[:limit]
