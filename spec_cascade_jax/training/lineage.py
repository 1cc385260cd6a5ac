"""Where a training run starts: a bundled model, a directory, or a model that
lives only in the project's git history.

One pair ships (docs/design.md §4); the models it was trained on from leave
the tree and stay in git. A recipe names such a starting point as

    init_from = 'git:<commit>:spec_cascade_jax/assets/models/<name>'
    init_sha256 = '<params_fingerprint of that model>'

`materialize` writes its files out of git history (`git show
<commit>:<path>/<file>`, in a clone of the repository) into the run's work
directory, and the recipe checks the fingerprint before training. Each
bundled model's recipe.json records its start the same way, under "start".
"""

from __future__ import annotations

import os
import subprocess

GIT_PREFIX = "git:"
# What a saved model directory holds (models/checkpoint.py), recipe optional.
_FILES = ("config.json", "params.msgpack", "recipe.json")


def parse_git_ref(ref: str) -> tuple[str, str] | None:
  """(commit, path) of a 'git:<commit>:<path>' reference; None for anything else."""
  if not ref.startswith(GIT_PREFIX):
    return None
  commit, sep, path = ref[len(GIT_PREFIX):].partition(":")
  if not sep or not commit or not path:
    raise ValueError(f"{ref!r}: a model in git history is written"
                     " 'git:<commit>:<path of its directory>'.")
  return commit, path.strip("/")


def get_command(commit: str, path: str, out_dir: str = "DIR") -> str:
  """The shell commands that write a model of the git history to `out_dir`."""
  return " && ".join(f"git show {commit}:{path}/{f} > {out_dir}/{f}" for f in _FILES[:2])


def _repo_root() -> str:
  """The git work tree this package lives in (the clone that holds the history)."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    out = subprocess.run(["git", "-C", here, "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, check=True)
  except (OSError, subprocess.CalledProcessError):
    return ""
  return out.stdout.strip()


def materialize(ref: str, out_dir: str, repo: str | None = None) -> str:
  """The directory of the model `ref` names: `ref` itself unless it is a git
  reference, whose files are written to `out_dir/<commit>/<name>` (once) from
  the history of `repo` (default: the clone this package lives in)."""
  parsed = parse_git_ref(ref)
  if parsed is None:
    return ref
  commit, path = parsed
  target = os.path.join(out_dir, commit[:12], os.path.basename(path))
  if all(os.path.isfile(os.path.join(target, f)) for f in _FILES[:2]):
    return target
  root = repo or _repo_root()
  if not root:
    raise FileNotFoundError(
        f"{ref!r} is a model of the project's git history, but this installation is"
        " not a git clone. In a clone, write it out with"
        f" `mkdir DIR && {get_command(commit, path)}` and pass DIR instead.")
  os.makedirs(target, exist_ok=True)
  for name in _FILES:
    proc = subprocess.run(["git", "-C", root, "show", f"{commit}:{path}/{name}"],
                          capture_output=True)
    if proc.returncode != 0:
      if name == "recipe.json":
        continue
      raise FileNotFoundError(
          f"{ref!r}: `git show {commit}:{path}/{name}` failed"
          f" ({proc.stderr.decode(errors='replace').strip()}). Fetch the full history"
          " (git fetch --unshallow) or pass the model's directory instead.")
    tmp = os.path.join(target, name + ".tmp")
    with open(tmp, "wb") as f:
      f.write(proc.stdout)
    os.replace(tmp, os.path.join(target, name))
  return target


def start_record(ref: str, sha256: str) -> dict:
  """What a recipe.json records of its starting model: the reference, the
  commit and path where it lives, its fingerprint, and how to get it."""
  parsed = parse_git_ref(ref)
  record = {"init_from": ref, "sha256": sha256}
  if parsed is not None:
    commit, path = parsed
    record.update(commit=commit, path=path, model=os.path.basename(path),
                  get=f"mkdir DIR && {get_command(commit, path)}")
  return record


def check_fingerprint(ref: str, actual: str, expected: str | None) -> None:
  """Raises when the starting model is not the one the recipe names."""
  if expected is not None and actual != expected:
    raise ValueError(
        f"init_from={ref!r} has the parameter fingerprint {actual[:16]}..., but the"
        f" recipe expects init_sha256={expected[:16]}...: it is another model. Point"
        " init_from at the model the recipe names, or drop init_sha256 to start from"
        " this one on purpose.")
