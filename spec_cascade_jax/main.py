"""Command-line entry point, t5x style: everything is chosen by gin.

    python -m spec_cascade_jax.main --gin_file=configs/demo.gin
    python -m spec_cascade_jax.main --gin_file=configs/runs/sweep.gin \\
        --gin_file=configs/models/demo_pair.gin \\
        --gin.TASK="'gettext_en_de'" --gin.OUTPUT_DIR="'runs/my_sweep'"

Layering: --gin_file may be repeated. Files are parsed in the order given and
a later file overrides what an earlier one binds: a run file first, then a
model pair file that fills its %gin.REQUIRED placeholders. A file is looked up
as given, then in --gin_search_paths, configs/ and the project root (an
`include` inside a file: in --gin_search_paths and configs/).

Overrides: --gin.NAME=VALUE (repeatable; short for --gin_bindings='NAME =
VALUE') is applied after every file. NAME is a macro that the files define or
use (--gin.GRID="'paper'") or a configurable's parameter
(--gin.sweep.run_sweep.repeats=1). VALUE is Python syntax: a string needs its
own quotes inside the shell's.

Mistakes stop the run before any work starts, with one line and exit code 2:
a gin file that is not found; a binding that names a macro, configurable or
parameter that does not exist (the line lists the close valid names); a
%gin.REQUIRED value left unset; a setting the job rejects before it loads
anything (an unknown TASK or METHOD, an ALPHA out of range: UsageError).

The gin file binds `main.run.fn` to the function to call (training recipe, sweep,
infer, ...). Library modules never import gin: configs name them through
`from __gin__ import dynamic_registration`.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import importlib.util  # noqa: F401  gin dynamic_registration uses it without importing it
import inspect
import io
import logging
import os
import re
import sys
from typing import Any, Callable, Iterable, Sequence

import gin
from gin import config_parser

# Imported for its effect: it hooks the project's seqio tasks into
# evaluation.infer, which registers them when a job names one (docs/design.md §5).
from spec_cascade_jax import tasks  # noqa: F401  pylint: disable=unused-import
from spec_cascade_jax.data.vocab import VocabularyMismatchError
from spec_cascade_jax.decoding.errors import UsageError

PROG = "python -m spec_cascade_jax.main"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIGS_DIR = os.path.join(_ROOT, "configs")
_MACRO = "gin.macro"


class ConfigError(UsageError):
  """A mistake in the command line or its gin files, found before any work
  starts (a missing file, a misspelt binding). `main` prints it, as every
  UsageError, on one line and exits with code 2."""


def run(fn: Callable[[], Any] | None = None):
  """The job a gin file selects: `main.run.fn = @recipes.train_gettext`."""
  if fn is None:
    raise UsageError("No job selected: bind `main.run.fn` in a gin file "
                     "(e.g. include configs/demo.gin).")
  return fn()


# ------------------------------------------------------------------ flags, --help


def bundled_configs() -> list[tuple[str, str]]:
  """[(path relative to the project root, one-line description)] of every gin
  file under configs/; the description is the file's first comment line."""
  out = []
  for path in sorted(glob.glob(os.path.join(_CONFIGS_DIR, "**", "*.gin"), recursive=True)):
    with open(path, encoding="utf-8") as f:
      first = f.readline().strip()
    desc = first.lstrip("#").strip() if first.startswith("#") else ""
    out.append((os.path.relpath(path, _ROOT), desc))
  return out


def _epilog() -> str:
  configs = bundled_configs()
  if not configs:
    return ""
  width = max(len(p) for p, _ in configs)
  lines = ["bundled configs (--gin_file=PATH; each file's header says what it needs):"]
  lines += [f"  {p:<{width}}  {d}" for p, d in configs]
  return "\n".join(lines)


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
  """`--gin.NAME=VALUE` -> `--gin_bindings=NAME = VALUE` (as t5x's gin_utils)."""
  out = []
  for arg in argv:
    if arg.startswith("--gin.") and "=" in arg:
      name, value = arg[len("--gin."):].split("=", 1)
      out.append(f"--gin_bindings={name} = {value}")
    else:
      out.append(arg)
  return out


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog=PROG, description=__doc__.rsplit("\n\nThe gin file binds", 1)[0],
      epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gin_file", action="append", default=[], metavar="PATH",
                      help="a gin file (repeatable; later files override earlier ones)")
  parser.add_argument("--gin_bindings", action="append", default=[], metavar="BINDING",
                      help="a gin binding 'NAME = VALUE', applied after the files "
                           "(repeatable); --gin.NAME=VALUE is the shorthand")
  parser.add_argument("--gin_search_paths", default="", metavar="A,B",
                      help="comma-separated extra directories for gin files and includes")
  return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  return make_parser().parse_args(rewrite_gin_args(argv))


# ------------------------------------------------------------------ gin files


def _search_dirs(search_paths: Sequence[str]) -> list[str]:
  """Where a relative gin file name is looked up, after the working directory."""
  out = []
  for d in [*search_paths, _CONFIGS_DIR, _ROOT]:
    d = os.path.abspath(d)
    if d not in out:
      out.append(d)
  return out


def resolve_gin_file(name: str, search_paths: Sequence[str] = ()) -> str:
  """The absolute path of gin file `name`: as given (absolute, or relative to
  the working directory), else under the search directories. ConfigError names
  the file and every place searched."""
  if os.path.isfile(name):
    return os.path.abspath(name)
  tried = [os.getcwd()]
  if not os.path.isabs(name):
    for d in _search_dirs(search_paths):
      if os.path.isfile(os.path.join(d, name)):
        return os.path.join(d, name)
      if d not in tried:
        tried.append(d)
  bundled = [p for p, _ in bundled_configs()]
  close = difflib.get_close_matches(name, bundled + [os.path.relpath(p, "configs")
                                                     for p in bundled], n=3, cutoff=0.8)
  hint = f"Did you mean {' or '.join(close)}?" if close else (
      f"`{PROG} --help` lists the bundled configs.")
  where = "as given" if os.path.isabs(name) else f"in {', '.join(tried)}"
  raise ConfigError(f"gin file {name!r} not found (looked {where}). {hint}")


def _guard_gin_file_readers() -> None:
  """gin's package-resource reader (for 'package/dir/x.gin' names) crashes with
  a TypeError instead of saying "not found" when a name's directory is a
  namespace package (e.g. the working directory's configs/ or runs/), and logs
  an ERROR for every search path that does not hold a file: make its
  existence check say False, quietly. ConfigError reports what is missing."""
  readers = getattr(gin.config, "_FILE_READERS", None)
  if not isinstance(readers, list):
    return
  for i, (reader, exists) in enumerate(readers):
    if reader is open or getattr(exists, "_scj_guarded", False):
      continue

    def guarded(path, _exists=exists):
      previous = logging.root.manager.disable
      logging.disable(logging.ERROR)
      try:
        return _exists(path)
      except TypeError:
        return False
      finally:
        logging.disable(previous)
    guarded._scj_guarded = True
    readers[i] = (reader, guarded)


def _set_search_paths(search_paths: Sequence[str]) -> None:
  prefixes = getattr(gin.config, "_LOCATION_PREFIXES", None)
  for path in [*search_paths, os.getcwd(), _CONFIGS_DIR]:
    if path and not (isinstance(prefixes, list) and path in prefixes):
      gin.add_config_file_search_path(path)
  # gin tries the bare relative path first, and for `include 'runs/x.gin'` its
  # resource reader then imports a Python package `runs` -- which crashes with a
  # TypeError when the working directory holds our `runs/` output folder. Put
  # the project's configs/ (and the user's search paths) ahead of the bare path.
  if isinstance(prefixes, list):
    for path in reversed([*search_paths, _CONFIGS_DIR]):
      if path in prefixes:
        prefixes.remove(path)
      prefixes.insert(0, path)
  _guard_gin_file_readers()


# ------------------------------------------------------------------ bindings


def _first_line(e: BaseException) -> str:
  return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _close(word: str, candidates: Iterable[str], n: int = 5) -> list[str]:
  return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=0.6)


def _suggest(word: str, candidates: Iterable[str], what: str) -> str:
  """'Did you mean A or B?' (difflib's close matches), else the valid names."""
  candidates = sorted(set(candidates))
  close = _close(word, candidates)
  if close:
    return f"Did you mean {' or '.join(close)}?"
  if len(candidates) <= 40:
    return f"Valid {what}: {', '.join(candidates) or '(none)'}."
  return f"No {what} is close to {word!r}."


def config_macros() -> set[str]:
  """Macros the parsed gin config defines (NAME = ...) or uses (%NAME)."""
  config = gin.config._CONFIG
  names = {scope for scope, selector in config if selector == _MACRO}
  for ref in gin.config.iterate_references(config):
    scope, selector = ref.config_key
    if selector == _MACRO:
      names.add(scope)
  return names


def _macro_refs(value) -> set[str]:
  """%NAME macro references inside a parsed binding value."""
  if isinstance(value, gin.config.ConfigurableReference):
    scope, selector = value.config_key
    return {scope} if selector == _MACRO else set()
  if isinstance(value, dict):
    value = list(value.values())
  if isinstance(value, (list, tuple)):
    return set().union(set(), *(_macro_refs(v) for v in value))
  return set()


def _binding_statements(bindings: Sequence[str]):
  """Parsed statements of the bindings, each with the binding it came from."""
  for binding in bindings:
    parser = config_parser.ConfigParser(io.StringIO(binding),
                                        gin.config.ParserDelegate(skip_unknown=True))
    try:
      statements = list(parser)
    except SyntaxError as e:
      raise ConfigError(
          f"binding {binding.strip()!r} is not gin syntax ({e.msg.rstrip('.')}). A value "
          "is Python syntax: quote strings, e.g. --gin.OUTPUT_DIR=\"'runs/x'\".") from None
    for statement in statements:
      yield binding, statement


def check_macro_bindings(bindings: Sequence[str], known: set[str]) -> None:
  """Each `NAME = VALUE` binding must name a macro that the parsed gin files
  define or use (or that another binding uses); so must each %NAME in a value.
  Otherwise a misspelt override would be silently ignored."""
  statements = list(_binding_statements(bindings))
  used_by_bindings = set()
  for _, st in statements:
    if isinstance(st, config_parser.BindingStatement):
      used_by_bindings |= _macro_refs(st.value)
  defined_by_bindings = set()
  for binding, st in statements:
    if not isinstance(st, config_parser.BindingStatement) or st.arg_name:
      continue
    name = f"{st.scope}/{st.selector}" if st.scope else st.selector
    if name not in known and name not in used_by_bindings:
      raise ConfigError(
          f"binding {binding.strip()!r}: no gin file given defines or uses a macro "
          f"{name}, so it would change nothing. {_suggest(name, known, 'macros')}")
    defined_by_bindings.add(name)
  for binding, st in statements:
    if isinstance(st, config_parser.BindingStatement):
      for name in sorted(_macro_refs(st.value) - known - defined_by_bindings):
        raise ConfigError(
            f"binding {binding.strip()!r}: %{name} is not a macro of the gin files given. "
            f"{_suggest(name, known, 'macros')}")


def _configurable_names() -> set[str]:
  """Every dotted suffix of every registered configurable's full name: the
  forms a binding may use (`sweep.run_sweep`, `run_sweep`, ...)."""
  out = set()
  for complete, _ in gin.config._REGISTRY.items():
    parts = complete.split(".")
    out.update(".".join(parts[i:]) for i in range(len(parts)))
  return out


def _parameters(selector: str) -> list[str]:
  registry = gin.config._REGISTRY
  matches = registry.matching_selectors(selector)
  if len(matches) != 1:
    return []
  fn = registry[matches[0]].wrapped
  try:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
  except (TypeError, ValueError):
    return []


def explain_binding_error(e: ValueError, bindings: Sequence[str]) -> str:
  """gin's ValueError for a binding -> one line with the close valid names."""
  msg = _first_line(e)
  where = re.search(r"In bindings string line (\d+)", str(e))
  binding = ""
  if where:
    lines = "\n".join(bindings).splitlines()
    n = int(where.group(1)) - 1
    binding = f"binding {lines[n].strip()!r}: " if 0 <= n < len(lines) else ""
  m = re.match(r"No configurable matching (?:reference )?'@?([^'(]+)(?:\(\))?'", msg)
  if m:
    name = m.group(1)
    names = {s for s in _configurable_names() if s.count(".") == name.count(".")}
    return f"{binding}{msg} {_suggest(name, names, 'configurables')}"
  m = re.match(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
  if m:
    params = _parameters(m.group(1))
    if params:
      return f"{binding}{msg} {_suggest(m.group(2), params, 'parameters')}"
  return f"{binding}{msg}"


def check_macro_references() -> None:
  """Every %NAME used must be bound (gin's own error prints the whole config)."""
  config = gin.config._CONFIG
  known = {scope for scope, selector in config if selector == _MACRO}
  for ref in gin.config.iterate_references(config):
    scope, selector = ref.config_key
    if selector == _MACRO and scope not in known:
      raise ConfigError(f"%{scope} is used but no gin file or binding defines it. "
                        f"{_suggest(scope, known, 'macros')}")


def _explain_include_error(e: OSError) -> str:
  text = " ".join(line.strip() for line in str(e).splitlines())
  m = re.match(r"Unable to open file: (.+?)\. Searched config paths: \[(.*?)\]\.", text)
  if not m:
    return text
  dirs = []
  for d in re.findall(r"'([^']*)'", m.group(2)):
    d = os.path.abspath(d) if d else os.getcwd()
    if d not in dirs:
      dirs.append(d)
  where = re.search(r'In file "(.+?)", line (\d+)', text)
  by = f" (an `include` in {where.group(1)}, line {where.group(2)})" if where else ""
  return (f"gin file {m.group(1)!r}{by} not found (looked in {', '.join(dirs)}); "
          "add its directory with --gin_search_paths.")


def configure(gin_files: Sequence[str], bindings: Sequence[str] = (),
              search_paths: Sequence[str] = ()) -> None:
  """Parses gin files, then bindings, with t5x-like search paths; finalizes.

  Raises ConfigError, before anything runs, for a gin file that is not found,
  an `include` that is not found, and a binding that names a macro, a
  configurable or a parameter that does not exist (with the close valid names).
  """
  _set_search_paths(search_paths)
  if not gin_files:
    raise ConfigError(f"no --gin_file given; try --gin_file=configs/demo.gin "
                      f"(`{PROG} --help` lists the bundled configs).")
  # Absolute paths: gin would otherwise try a relative name under configs/
  # first and log "Path not found: configs/configs/..." as an ERROR.
  files = [resolve_gin_file(f, search_paths) for f in gin_files]
  try:
    gin.parse_config_files_and_bindings(files, [], finalize_config=False)
  except OSError as e:  # an `include` that no search path holds
    raise ConfigError(_explain_include_error(e)) from None
  check_macro_bindings(bindings, config_macros())
  try:
    gin.parse_config(list(bindings))
  except ValueError as e:
    raise ConfigError(explain_binding_error(e, bindings)) from None
  check_macro_references()
  try:
    gin.finalize()
  except ValueError as e:
    m = re.match(r"(\S+)/macro\.value set to `%gin\.REQUIRED`", _first_line(e))
    if not m:
      raise
    raise ConfigError(
        f"{m.group(1)} is required (%gin.REQUIRED in the gin files given): pass "
        f"--gin.{m.group(1)}=VALUE or a gin file that sets it (see the run file's "
        "header).") from None


def main(argv: Sequence[str] | None = None):
  """Parses the command line and runs the job. A UsageError (a ConfigError, or
  a setting the job rejects) or a VocabularyMismatchError (a vocabulary the
  models were not trained with) ends it with one line on stderr and exit code
  2; any other exception is a bug and keeps its traceback."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  gin.clear_config()
  try:
    configure(args.gin_file, args.gin_bindings,
              [p for p in args.gin_search_paths.split(",") if p])
    # Dynamic registration (gin files `from spec_cascade_jax import main`)
    # attaches the bindings to this module's `run`.
    return gin.get_configurable(run)()
  except (UsageError, VocabularyMismatchError) as e:
    # gin appends "In call to configurable ..." lines to the message.
    print(f"{PROG}: error: {_first_line(e)}", file=sys.stderr)
    raise SystemExit(2) from None


if __name__ == "__main__":
  # Run the importable module, not this `__main__` copy, so that the `run`
  # gin configures is the one called.
  from spec_cascade_jax import main as _main_module
  _main_module.main()
