"""The one 8-fake-device subprocess of the partitioning tests.

    python tests/mesh_worker.py OUT_DIR t5,lm

tests/test_partitioning.py (part "t5": partitioning_worker.run_mesh, the
tiny T5 pair and the bundled pair) and tests/test_lm_partitioning.py (part
"lm": lm_partitioning_worker.main, every decoder-only LM family) assert on
what one worker process finds. The `eight_device_run` fixture (conftest.py)
starts it once per pytest session, with only the parts whose tests were
collected (`PART_FIXTURES`), and each file's module fixture reads its part's
files from the same OUT_DIR. A part that raises leaves its traceback in
OUT_DIR/<part>.error and the other part still runs, so only the failing
part's tests fail, with that traceback.

This process sees 8 fake CPU devices (`env`: XLA_FLAGS
--xla_force_host_platform_device_count), uses loopback addresses only, and
compiles with XLA:CPU's backend optimizations off and its older fusion
emitters (FAST_COMPILE_FLAGS: each compile takes about a quarter of the
time): compiles dominate its cost, and what it checks (sharded tokens and
stats equal to unsharded ones computed in the same process, shardings, the
partitioned HLO) does not depend on how the CPU kernels are generated. An
XLA that no longer knows one of these flags gets a rerun without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEVICES = 8
TIMEOUT_S = 900          # generous: CI machines are shared; normally ~2 min for both
# Which module fixture reads which part: a session runs only the parts whose
# fixture a collected test uses.
PART_FIXTURES = {"t5": "mesh_run", "lm": "lm_run"}
# Faster compiles, the same partitioned programs (see the module docstring).
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
                      " --xla_cpu_use_fusion_emitters=false")
# What XLA says (and then aborts) when XLA_FLAGS names a flag it does not know.
UNKNOWN_FLAG = "Unknown flag in XLA_FLAGS"


def assert_sharded_equals_unsharded(results: dict, key: str):
  """Every statistic of `key`'s sharded run equals its unsharded one, and the
  comparison means something (varied tokens; some drafts accepted, some
  rejected). Returns the unsharded tokens."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  ref = results[f"{key}/unsharded/tokens"]
  for stat in [k.split("/")[-1] for k in results if k.startswith(f"{key}/unsharded/")]:
    np.testing.assert_array_equal(results[f"{key}/sharded/{stat}"],
                                  results[f"{key}/unsharded/{stat}"], err_msg=stat)
  assert len(np.unique(ref)) > 8, ref
  return ref


def assert_drafts_accepted_and_rejected(results: dict, key: str):
  accepted = results[f"{key}/unsharded/accepted"].sum()
  assert 0 < accepted < results[f"{key}/unsharded/draft_tokens"].sum()


def env(devices: int, fast: bool = True) -> dict:
  """os.environ for a worker process with `devices` fake CPU devices (and,
  with `fast`, FAST_COMPILE_FLAGS)."""
  out = dict(os.environ)
  flags = f" {FAST_COMPILE_FLAGS}" if fast else ""
  out["XLA_FLAGS"] = (out.get("XLA_FLAGS", "") + flags +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  out["JAX_PLATFORMS"] = "cpu"
  out["PYTHONPATH"] = ROOT + os.pathsep + out.get("PYTHONPATH", "")
  return out


def parts_for(items) -> list[str]:
  """The parts that the collected test items need, by the fixtures they use."""
  used = set()
  for item in items:
    used.update(getattr(item, "fixturenames", ()))
  return [part for part, fixture in PART_FIXTURES.items() if fixture in used]


def run(out_dir: str, parts) -> dict:
  """Runs the worker for `parts` (parent side); returns {part: error text or None}.

  A worker that crashes or times out fails every part with its stderr.
  """
  parts = list(parts)
  t0 = time.time()
  log = ""
  for fast in (True, False):
    try:
      proc = subprocess.run([sys.executable, __file__, out_dir, ",".join(parts)],
                            env=env(DEVICES, fast), capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
      err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
      return {p: f"the 8-device worker did not finish in {TIMEOUT_S} s:\n{err[-4000:]}"
              for p in parts}
    log += f"{parts} fast={fast}: exit {proc.returncode} in {time.time() - t0:.1f} s\n"
    if not (proc.returncode and UNKNOWN_FLAG in proc.stderr):
      break
  with open(os.path.join(out_dir, "worker.log"), "w") as f:
    f.write(f"{log}{proc.stderr}")
  errors = {}
  for part in parts:
    path = os.path.join(out_dir, f"{part}.error")
    if os.path.exists(path):
      with open(path) as f:
        errors[part] = f.read()
    elif proc.returncode:
      errors[part] = f"the 8-device worker failed (exit {proc.returncode}):\n" \
                     f"{proc.stderr[-4000:]}"
    else:
      errors[part] = None
  return errors


def main(out_dir: str, parts: list[str]):
  """Worker side: each part writes its files to out_dir, or its traceback."""
  import jax

  assert jax.device_count() == DEVICES, jax.devices()
  import lm_partitioning_worker
  import partitioning_worker

  runners = {"t5": partitioning_worker.run_mesh, "lm": lm_partitioning_worker.main}
  unknown = sorted(set(parts) - set(runners))
  if unknown:
    raise SystemExit(f"unknown parts {unknown}; choose from {sorted(runners)}")
  for part in parts:
    t0 = time.time()
    try:
      runners[part](out_dir)
    except Exception:  # pylint: disable=broad-except
      with open(os.path.join(out_dir, f"{part}.error"), "w") as f:
        f.write(traceback.format_exc())
    print(f"part {part}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
  sys.path.insert(0, ROOT)
  sys.path.insert(0, HERE)
  main(sys.argv[1], [p for p in sys.argv[2].split(",") if p])
