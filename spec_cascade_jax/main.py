"""Command-line entry point, t5x style: everything is chosen by gin.

    python -m spec_cascade_jax.main --gin_file=configs/train/demo_verifier.gin \
        --gin.TRAIN_STEPS=100

Flags:
  --gin_file=PATH          (repeatable) gin files, `include`s resolved against
                           --gin_search_paths, the current directory and the
                           project's `configs/` directory.
  --gin_bindings=BINDING   (repeatable) e.g. --gin_bindings='ALPHA = 0.3'
  --gin.NAME=VALUE         shorthand for --gin_bindings='NAME = VALUE'
  --gin_search_paths=A,B   extra directories for gin files.

The gin file binds `main.run.fn` to the function to call (training recipe, sweep,
infer, ...). Library modules never import gin: configs name them through
`from __gin__ import dynamic_registration`.
"""

from __future__ import annotations

import argparse
import importlib.util  # noqa: F401  gin dynamic_registration uses it without importing it
import os
import sys
from typing import Any, Callable, Sequence

import gin

_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs")


def run(fn: Callable[[], Any] | None = None):
  """The job a gin file selects: `main.run.fn = @recipes.train_gettext`."""
  if fn is None:
    raise ValueError("No job selected: bind `main.run.fn` in a gin file "
                     "(e.g. include configs/demo.gin).")
  return fn()


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


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m spec_cascade_jax.main",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--gin_file", action="append", default=[])
  parser.add_argument("--gin_bindings", action="append", default=[])
  parser.add_argument("--gin_search_paths", default="")
  return parser.parse_args(rewrite_gin_args(argv))


def configure(gin_files: Sequence[str], bindings: Sequence[str] = (),
              search_paths: Sequence[str] = ()) -> None:
  """Parses gin files/bindings with t5x-like search paths."""
  for path in [*search_paths, os.getcwd(), _CONFIGS_DIR]:
    if path:
      gin.add_config_file_search_path(path)
  # gin tries the bare relative path first, and for `include 'runs/x.gin'` its
  # resource reader then imports a Python package `runs` -- which crashes with a
  # TypeError when the working directory holds our `runs/` output folder. Put
  # the project's configs/ (and the user's search paths) ahead of the bare path.
  prefixes = getattr(gin.config, "_LOCATION_PREFIXES", None)
  if isinstance(prefixes, list):
    for path in reversed([*search_paths, _CONFIGS_DIR]):
      if path in prefixes:
        prefixes.remove(path)
      prefixes.insert(0, path)
  if not gin_files:
    raise SystemExit("No --gin_file given. Try --gin_file=configs/demo.gin")
  # A file that exists as given is passed absolute: gin would otherwise try it
  # under configs/ first and log "Path not found: configs/configs/..." as an
  # ERROR before finding it.
  gin_files = [os.path.abspath(f) if os.path.isfile(f) else f for f in gin_files]
  gin.parse_config_files_and_bindings(list(gin_files), list(bindings),
                                      finalize_config=True)


def main(argv: Sequence[str] | None = None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  gin.clear_config()
  configure(args.gin_file, args.gin_bindings,
            [p for p in args.gin_search_paths.split(",") if p])
  # Dynamic registration (gin files `from spec_cascade_jax import main`)
  # attaches the bindings to this module's `run`.
  return gin.get_configurable(run)()


if __name__ == "__main__":
  # Run the importable module, not this `__main__` copy, so that the `run`
  # gin configures is the one called.
  from spec_cascade_jax import main as _main_module
  _main_module.main()
