"""Mutation check: plant plausible one-line bugs, one at a time, and run the fast tests.

A developer tool, not part of CI. Each mutant of MUTANTS replaces one line of
the targets, the acceptance and residual code, the commit, the cache writes
or the rollback with a plausible wrong one. The tool applies it to a scratch
copy of the package and the tests (the working tree is never touched), runs
FAST_TESTS there with `-x`, and counts the mutant as caught when the tests fail.
Every mutant must be caught; a survivor names a hole in the tests.

    python tools/mutants.py                  # all mutants; results in runs/mutants.json
    python tools/mutants.py --only opt_tv_unscaled residual_sign
    python tools/mutants.py --list

Results are written after every mutant; a rerun skips the mutants whose
result was recorded for the same source and tests (pass --fresh to redo them).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import tqdm

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAST_TESTS = ("tests/test_targets.py", "tests/test_kernel.py", "tests/test_greedy_law.py",
              "tests/test_t5.py", "tests/test_sampling_exact.py::test_speculative_targets_exact")
TARGETS = "spec_cascade_jax/decoding/targets.py"
KERNEL = "spec_cascade_jax/decoding/kernel.py"
DRAFTING = "spec_cascade_jax/decoding/drafting.py"
LOOP = "spec_cascade_jax/decoding/loop.py"
T5 = "spec_cascade_jax/models/t5/model.py"


@dataclasses.dataclass(frozen=True)
class Mutant:
  name: str
  path: str     # relative to the repository root
  old: str      # must occur exactly once in the file
  new: str
  why: str      # the bug it stands for


MUTANTS = (
    # --- targets: decisions on the unscaled q°, p°; mixtures of the scaled q, p.
    Mutant("opt_tv_unscaled", TARGETS,
           "tv = jnp.sum(jnp.maximum(q - p, 0.0)", "tv = jnp.sum(jnp.maximum(q0 - p0, 0.0)",
           "opt's TV on the unscaled distributions"),
    Mutant("token_v3_max_q", TARGETS,
           "p0 >= (1.0 - _alpha(alpha, q)) * _maxp(p0)",
           "p0 >= (1.0 - _alpha(alpha, q)) * _maxp(q0)",
           "token_v3's threshold from max q° instead of max p°"),
    Mutant("chow_scaled", TARGETS,
           "return _mix(q, p, chow_defer(q0, alpha))", "return _mix(q, p, chow_defer(q, alpha))",
           "chow decides on the scaled q"),
    Mutant("diff_scaled", TARGETS,
           "r = _maxp(q0) < _maxp(p0) - _alpha(alpha, q)\n",
           "r = _maxp(q) < _maxp(p) - _alpha(alpha, q)\n",
           "diff decides on the scaled q, p"),
    Mutant("token_v1_scaled", TARGETS,
           "return _token(q, p, q0 >= _maxp(p0) - _alpha(alpha, q))",
           "return _token(q, p, q >= _maxp(p0) - _alpha(alpha, q))",
           "token_v1's keep set on the scaled q"),
    Mutant("token_rest_all_q", TARGETS,
           "1.0 - jnp.sum(q_kept, axis=-1, keepdims=True)",
           "1.0 - jnp.sum(q, axis=-1, keepdims=True)",
           "token rules hand the verifier the mass of every token, not of the rejected ones"),
    Mutant("lossy_times", TARGETS,
           "m = jnp.minimum(q, p / (1.0 - a))", "m = jnp.minimum(q, p * (1.0 - a))",
           "lossy SD's acceptance with (1 - α) on the wrong side"),
    Mutant("bild_argmax_p", TARGETS,
           "top = jnp.argmax(q0, axis=-1)[..., None]", "top = jnp.argmax(p0, axis=-1)[..., None]",
           "BiLD scores the verifier's argmax instead of the drafter's"),
    Mutant("residual_sign", TARGETS,
           "return normalize(jnp.maximum(pi - q, 0.0), pi)",
           "return normalize(jnp.maximum(q - pi, 0.0), pi)",
           "the residual max(0, q - π) instead of max(0, π - q)"),
    # --- kernel: acceptance, correction, commit, statistics.
    Mutant("accept_all_not_leading_run", KERNEL,
           "n = jnp.sum(jnp.cumprod(ok.astype(jnp.int32), axis=1), axis=1)",
           "n = jnp.sum(ok.astype(jnp.int32), axis=1)",
           "counts every accepted draft instead of the leading run"),
    Mutant("accept_without_q", KERNEL,
           "ok = u_accept * q_x < pi_x", "ok = u_accept < pi_x",
           "accepts with probability π(x) instead of min(1, π(x)/q(x))"),
    Mutant("correction_from_pi", KERNEL,
           "targets.residual(pi_n, q_n), pi_n)", "pi_n, pi_n)",
           "after a rejection samples π instead of the residual"),
    Mutant("bonus_from_q", KERNEL,
           "targets.residual(pi_n, q_n), pi_n)", "targets.residual(pi_n, q_n), q_n)",
           "the bonus token from the drafter instead of π"),
    Mutant("accept_uniforms_reused", KERNEL,
           "u[:, gamma + 1:2 * gamma + 1]", "u[:, :gamma]",
           "the acceptance test reuses the uniforms that drew the drafts"),
    Mutant("verify_position_late", KERNEL,
           "drafting.verify_chunk(verifier, chunk, state.verifier_cache, length,",
           "drafting.verify_chunk(verifier, chunk, state.verifier_cache, length + 1,",
           "the verifier scores the chunk one position late"),
    Mutant("bonus_ignores_draft_length", KERNEL,
           "jnp.where((n < d)[:, None], targets.residual",
           "jnp.where((n < gamma)[:, None], targets.residual",
           "a row that drafted d < γ tokens and had all accepted samples the residual "
           "instead of π_{d+1}"),
    Mutant("draft_position_fixed", DRAFTING,
           "drafter.step(token[:, None], cache, length + i)",
           "drafter.step(token[:, None], cache, length)",
           "every draft step written at the round's first position"),
    Mutant("commit_offset", LOOP,
           "(length + 1)[:, None])", "length[:, None])",
           "the window overwrites the last committed token"),
    Mutant("commit_past_eos", LOOP,
           "count = jnp.minimum(jnp.minimum(n_valid, first_eos + 1), max_new_tokens - length)",
           "count = jnp.minimum(n_valid, max_new_tokens - length)",
           "tokens after EOS are committed"),
    Mutant("deferrals_uncommitted", KERNEL,
           "jnp.sum(deferred & (j < count[:, None]), axis=1)", "jnp.sum(deferred, axis=1)",
           "deferrals counted at drafted positions that were never committed"),
    # --- the T5 cache: writes and the rollback (stale slots masked on read).
    Mutant("cache_write_late", T5,
           "self._tied(), self_caches, q_pos)", "self._tied(), self_caches, q_pos + 1)",
           "K/V written one slot after the token's position"),
    Mutant("rollback_sees_stale_slot", T5,
           "visible = kp[:, None, :] <= q_pos[:, :, None]",
           "visible = kp[:, None, :] <= q_pos[:, :, None] + 1",
           "a query sees one slot past its position (a rolled-back draft)"),
)


def _sha(*parts: bytes) -> str:
  h = hashlib.sha256()
  for p in parts:
    h.update(p)
  return h.hexdigest()[:16]


def _fingerprint(m: Mutant) -> str:
  """Changes when the mutated file, the mutant or a fast test file changes."""
  files = [m.path] + sorted({t.split("::")[0] for t in FAST_TESTS}) + ["tests/law_reference.py"]
  return _sha(repr(dataclasses.astuple(m)).encode(),
              *[(ROOT / f).read_bytes() for f in files])


def check_applies(m: Mutant) -> None:
  """Raises if the mutant's line is not exactly once in today's source."""
  text = (ROOT / m.path).read_text()
  n = text.count(m.old)
  if n != 1:
    raise ValueError(f"mutant {m.name}: {m.old!r} occurs {n} times in {m.path} "
                     "(the source changed: update the mutant).")


def _scratch_copy(dest: pathlib.Path) -> None:
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
  pkg = dest / "spec_cascade_jax"
  shutil.copytree(ROOT / "spec_cascade_jax", pkg, ignore=shutil.ignore_patterns(
      "__pycache__", "*.pyc", "assets"))
  os.symlink(ROOT / "spec_cascade_jax" / "assets", pkg / "assets")  # read-only data


def run_mutant(m: Mutant, timeout_s: float) -> dict:
  check_applies(m)
  with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
    scratch = pathlib.Path(tmp)
    _scratch_copy(scratch)
    target = scratch / m.path
    target.write_text(target.read_text().replace(m.old, m.new))
    env = dict(os.environ, PYTHONPATH=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    where = subprocess.run(
        [sys.executable, "-c", "import spec_cascade_jax, sys; print(spec_cascade_jax.__file__)"],
        cwd=scratch, env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(str(scratch)):
      raise RuntimeError(f"the scratch copy is not what gets imported ({where}); "
                         "run from a plain checkout")
    start = time.time()
    try:
      proc = subprocess.run(
          [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *FAST_TESTS],
          cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout_s)
      rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
      rc, out = -1, "timed out"
  failed = [line.split(" ", 1)[1].split(" - ")[0] for line in out.splitlines()
            if line.startswith("FAILED ") or line.startswith("ERROR ")]
  return {"caught": rc not in (0, -1), "rc": rc, "seconds": round(time.time() - start, 1),
          "caught_by": failed[:1], "why": m.why, "fingerprint": _fingerprint(m),
          "tail": "" if rc in (0, 1) else out[-1500:]}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--only", nargs="*", default=None, help="mutant names (default: all)")
  ap.add_argument("--out", default=str(ROOT / "runs" / "mutants.json"))
  ap.add_argument("--fresh", action="store_true", help="ignore recorded results")
  ap.add_argument("--list", action="store_true", help="list the mutants and exit")
  ap.add_argument("--timeout_s", type=float, default=1800.0, help="per mutant")
  args = ap.parse_args(argv)
  names = {m.name for m in MUTANTS}
  unknown = sorted(set(args.only or ()) - names)
  if unknown:
    ap.error(f"unknown mutants {unknown}; valid: {sorted(names)}")
  chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
  for m in chosen:
    check_applies(m)
  if args.list:
    for m in chosen:
      print(f"{m.name:28s} {m.path:42s} {m.why}")
    return 0
  out = pathlib.Path(args.out)
  results = {} if args.fresh or not out.exists() else json.loads(out.read_text())
  for m in tqdm.tqdm(chosen, desc="mutants", unit="mutant"):
    if results.get(m.name, {}).get("fingerprint") == _fingerprint(m):
      continue  # recorded for this source and these tests
    results[m.name] = run_mutant(m, args.timeout_s)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True))
  print(f"\n{'mutant':28s} {'caught':7s} {'s':>6s}  first failing test")
  for m in chosen:
    r = results[m.name]
    print(f"{m.name:28s} {'yes' if r['caught'] else 'NO':7s} {r['seconds']:6.0f}  "
          f"{(r['caught_by'] or [r['tail'][-80:] if r['tail'] else '-'])[0]}")
  caught = sum(results[m.name]["caught"] for m in chosen)
  print(f"\nkill rate: {caught}/{len(chosen)} (fast tests: {' '.join(FAST_TESTS)})")
  return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
  sys.exit(main())
