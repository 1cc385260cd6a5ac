"""A/B of `speed.py` between two versions of the library: is a change slower?

Each version runs `speed.py` in its own process (a process holds one version
of the package), from a `git archive` of its commit unpacked under --workdir
(--new may also be a directory: this checkout by default). The runs alternate, old and new
taking turns to go first (ABBA...), so slow drift of the machine falls on
both sides alike. For every method of speed.py's tables the ratio new / old of
batch-1 latency (ms per example, median over repeats) and of batch
throughput is taken within each adjacent pair of runs; the table gives the
median ratio over the pairs and its range.

    python benchmarks/ab_speed.py --old HEAD~1 --pairs 4 --json out/ab.json \\
        -- --examples 16 --repeats 3 --batches 8 --temperatures 0

Everything after `--` goes to speed.py unchanged. A finished run's JSON is
kept per pair under --workdir, so an interrupted A/B resumes at the next pair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import common  # noqa: E402


def _rev(ref: str) -> str:
  return subprocess.run(["git", "rev-parse", ref], cwd=REPO, check=True,
                        capture_output=True, text=True).stdout.strip()


def unpack(ref: str, workdir: str) -> str:
  """The tree of commit `ref` under workdir/<sha> (unpacked once)."""
  sha = _rev(ref)
  tree = os.path.join(workdir, sha[:12])
  if not os.path.isdir(tree):
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
      tar = os.path.join(tmp, "tree.tar")
      subprocess.run(["git", "archive", "--format=tar", "-o", tar, sha], cwd=REPO,
                     check=True)
      with tarfile.open(tar) as t:
        t.extractall(os.path.join(tmp, "tree"), filter="data")
      os.replace(os.path.join(tmp, "tree"), tree)
  return tree


def run_speed(tree: str, speed_args: list[str], out: str) -> dict:
  """speed.py of `tree`, with `tree`'s package first on the path; its JSON."""
  if not os.path.exists(out):
    env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # Which package the process imports is checked, not assumed: an editable
    # install of the other version must not win.
    probe = subprocess.run([sys.executable, "-c", "import spec_cascade_jax as s; print(s.__file__)"],
                           cwd=tree, env=env, check=True, capture_output=True, text=True)
    if not os.path.realpath(probe.stdout.strip()).startswith(os.path.realpath(tree)):
      raise RuntimeError(f"{tree}: the process imported {probe.stdout.strip()}, not this "
                         "tree's package.")
    subprocess.run([sys.executable, os.path.join(tree, "benchmarks", "speed.py"),
                    *speed_args, "--json", out + ".tmp"], cwd=tree, env=env, check=True)
    os.replace(out + ".tmp", out)
  with open(out, encoding="utf-8") as f:
    return json.load(f)


def _metrics(report: dict) -> dict[tuple[str, str, str], float]:
  """{(table, method, metric): value}; latency and throughput columns."""
  out = {}
  for table, rows in report["tables"].items():
    for r in rows:
      for k, v in r.items():
        if k == "ms_per_example" or (k.startswith("tok_s_b") and not k.endswith("_best")):
          out[(table, r["label"], k)] = float(v)
  return out


def compare(pairs: list[tuple[dict, dict]]) -> list[dict]:
  """Rows: per (table, method, metric) the new/old ratio of each pair, its
  median and range. For latency < 1 is faster; for throughput > 1 is."""
  per = [(_metrics(old), _metrics(new)) for old, new in pairs]
  keys = [k for k in per[0][0] if all(k in o and k in n for o, n in per)]
  rows = []
  for table, method, metric in keys:
    ratios = np.array([n[(table, method, metric)] / o[(table, method, metric)]
                       for o, n in per])
    rows.append({"table": table, "method": method,
                 "metric": "latency" if metric == "ms_per_example" else metric,
                 "old": float(np.median([o[(table, method, metric)] for o, _ in per])),
                 "new": float(np.median([n[(table, method, metric)] for _, n in per])),
                 "ratio_median": float(np.median(ratios)), "ratio_min": float(ratios.min()),
                 "ratio_max": float(ratios.max())})
  return rows


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  command = " ".join(["python benchmarks/ab_speed.py", *argv])
  speed_args = argv[argv.index("--") + 1:] if "--" in argv else []
  argv = argv[:argv.index("--")] if "--" in argv else argv
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--old", default="HEAD", help="git ref of the old version")
  ap.add_argument("--new", default=REPO,
                  help="git ref of the new version, or a source tree (default: this checkout)")
  ap.add_argument("--pairs", type=int, default=4, help="old/new pairs of runs")
  ap.add_argument("--workdir", default=os.path.join(REPO, "runs", "ab_speed"))
  ap.add_argument("--json", help="also write the comparison here")
  args = ap.parse_args(argv)
  if args.pairs < 1:
    ap.error("--pairs must be >= 1")
  old_tree = unpack(args.old, args.workdir)
  new_tree = args.new if os.path.isdir(args.new) else unpack(args.new, args.workdir)
  name = os.path.basename(old_tree) + ("" if new_tree == args.new
                                       else "-" + os.path.basename(new_tree))
  runs_dir = os.path.join(args.workdir, f"runs-{name}")
  os.makedirs(runs_dir, exist_ok=True)
  pairs, runs = [], []
  for i in range(args.pairs):
    order = [("old", old_tree), ("new", new_tree)]
    if i % 2:
      order.reverse()       # ABBA: each side goes first in half the pairs
    got = {side: run_speed(tree, speed_args, os.path.join(runs_dir, f"{i}-{side}.json"))
           for side, tree in order}
    pairs.append((got["old"], got["new"]))
    runs += [{"pair": i, "side": side, "date": got[side]["machine"]["date"],
              "load_avg_1m": got[side]["machine"]["load_avg_1m"]} for side, _ in order]
  rows = compare(pairs)
  info = common.machine()
  loads = [r["load_avg_1m"] for r in runs]
  print(f"\n# runs {runs[0]['date']} to {runs[-1]['date']}  {info['cpu']} x{info['cpu_count']}"
        f"  jax {info['jax']}  load {min(loads)}-{max(loads)}  old: {args.old} "
        f"({os.path.basename(old_tree)})  new: {args.new}  pairs: {args.pairs}")
  print(common.format_table(rows, [("table", "table", ""), ("method", "method", ""),
                                   ("metric", "metric", ""), ("old", "old", ".1f"),
                                   ("new", "new", ".1f"),
                                   ("ratio_median", "new/old (med)", ".3f"),
                                   ("ratio_min", "min", ".3f"), ("ratio_max", "max", ".3f")]))
  print("latency: ms per example at batch 1 (new/old < 1: new faster); tok_s_bN: "
        "tokens/s at batch N (new/old > 1: new faster).")
  if args.json:
    common.write_json(args.json, {"machine": info, "command": command, "old": args.old,
                                  "old_sha": os.path.basename(old_tree), "new": args.new,
                                  "pairs": args.pairs, "speed_args": speed_args,
                                  "runs": runs, "rows": rows})
  return rows


if __name__ == "__main__":
  main()
