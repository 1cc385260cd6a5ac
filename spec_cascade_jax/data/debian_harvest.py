"""Harvests German gettext catalogs from Debian packages, without installing them.

    # 1. Pin the package list (needs `apt-file update`; writes package, version, source):
    python -m spec_cascade_jax.data.debian_harvest discover --packages PACKAGES.tsv
    # 2. Download and unpack the pinned versions (resumable; debs are deleted):
    python -m spec_cascade_jax.data.debian_harvest fetch --packages PACKAGES.tsv --out DIR

`fetch` asks `apt-get download --print-uris <package>=<version>` where each
pinned .deb lies, downloads it (sha256 checked against the archive index), and
reads its data archive (`dpkg-deb --fsys-tarfile`) as a stream, keeping only German catalogs
(`.../de/LC_MESSAGES/*.mo`, `de_AT`, `de_CH`, ...) and the package's
`usr/share/doc/<package>/copyright`. Each package lands in `DIR/<package>/`
with a `harvest.json` (version, source package, catalog paths inside the
package); a package whose `harvest.json` exists is skipped, so an interrupted
fetch resumes where it stopped.

Excluded by name, at discovery and again at fetch: any package, and any
catalog, whose name contains one of `EXCLUDED_NAMES`. An outside evaluation set
is built from those catalogs, so they must never reach training.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from typing import Sequence

EXCLUDED_NAMES = ("django", "sphinx")
# A German catalog inside a package's file tree.
GERMAN_CATALOG = re.compile(r"(^|/)de(_[A-Z]{2})?(\.[\w-]+)?(@\w+)?/LC_MESSAGES/[^/]+\.mo$")
_COPYRIGHT = re.compile(r"^usr/share/doc/[^/]+/copyright$")
PACKAGES_HEADER = "package\tversion\tsource"


def excluded(name: str) -> bool:
  """True when a package or catalog name must never be used (see EXCLUDED_NAMES)."""
  low = name.lower()
  return any(x in low for x in EXCLUDED_NAMES)


def read_packages(path: str) -> list[tuple[str, str, str]]:
  """The pinned list: (package, version, source package) rows of a TSV file."""
  rows = []
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  if not lines or lines[0] != PACKAGES_HEADER:
    raise ValueError(f"{path}: the first line must be the header {PACKAGES_HEADER!r}")
  for n, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    parts = line.split("\t")
    if len(parts) != 3:
      raise ValueError(f"{path}:{n}: expected package<TAB>version<TAB>source, got {line!r}")
    if excluded(parts[0]):
      raise ValueError(f"{path}:{n}: package {parts[0]!r} is excluded "
                       f"(names containing {EXCLUDED_NAMES}); remove it from the list")
    rows.append((parts[0], parts[1], parts[2]))
  return rows


def discover(packages_path: str) -> int:
  """Lists the packages that ship German .mo catalogs (apt-file) and pins them."""
  pattern = r"/de(_[A-Z]+)?/LC_MESSAGES/[^/]*\.mo$"
  out = subprocess.run(["apt-file", "search", "-x", pattern], capture_output=True,
                       text=True, check=False)
  if out.returncode not in (0, 1):
    raise RuntimeError(f"apt-file failed ({out.stderr.strip()}); run `apt-file update` first")
  names = set()
  for line in out.stdout.splitlines():
    pkg, _, path = line.partition(": ")
    if not excluded(pkg) and not excluded(os.path.basename(path)):
      names.add(pkg)
  show = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(names)],
                        capture_output=True, text=True, check=True).stdout
  rows, cur = {}, {}
  for line in show.splitlines() + [""]:
    if not line.strip():
      if cur.get("Package") in names:
        src = cur.get("Source", cur["Package"]).split(" ")[0]
        rows[cur["Package"]] = (cur["Version"], src)
      cur = {}
    elif ": " in line and not line.startswith(" "):
      k, _, v = line.partition(": ")
      cur[k] = v
  with open(packages_path, "w", encoding="utf-8") as f:
    f.write(PACKAGES_HEADER + "\n")
    for pkg in sorted(rows):
      f.write(f"{pkg}\t{rows[pkg][0]}\t{rows[pkg][1]}\n")
  return len(rows)


def extract_catalogs(deb: str, dest: str) -> list[str]:
  """Unpacks German catalogs and the copyright file of `deb` into `dest`."""
  proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
  kept = []
  with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
    for m in tar:
      name = m.name[2:] if m.name.startswith("./") else m.name
      is_cat = GERMAN_CATALOG.search(name) and not excluded(os.path.basename(name))
      if not m.isfile() or not (is_cat or _COPYRIGHT.match(name)):
        continue  # links to catalogs point at files of the same package
      target = os.path.join(dest, name)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      with tar.extractfile(m) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out)
      if is_cat:
        kept.append(name)
  if proc.wait() != 0:
    raise RuntimeError(f"dpkg-deb could not read {deb}")
  return sorted(kept)


def download_uris(rows: Sequence[tuple[str, str, str]], chunk: int = 200
                  ) -> dict[str, tuple[str, str, int, str]]:
  """package -> (uri, file name, size, sha256) from `apt-get download --print-uris`
  (one apt call per `chunk` packages; nothing is downloaded)."""
  out = {}
  for i in range(0, len(rows), chunk):
    part = rows[i:i + chunk]
    got = subprocess.run(["apt-get", "download", "--print-uris",
                          *[f"{p}={v}" for p, v, _ in part]],
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
      raise RuntimeError(f"apt-get could not resolve the pinned versions: "
                         f"{got.stderr.strip()[-500:]}; run `apt-get update`, or re-pin "
                         "with `discover` when the archive has moved on")
    by_file = {}
    for line in got.stdout.splitlines():
      m = re.match(r"^'([^']+)' (\S+) (\d+) SHA256:([0-9a-f]+)", line)
      if m:
        by_file[m.group(2).split("_")[0]] = (m.group(1), m.group(2), int(m.group(3)),
                                             m.group(4))
    for p, _, _ in part:
      if p in by_file:
        out[p] = by_file[p]
  return out


def fetch_one(package: str, version: str, source: str, uri: tuple[str, str, int, str],
              out_dir: str) -> str:
  """Downloads (checking sha256), unpacks and records one package; a status word."""
  dest = os.path.join(out_dir, package)
  if os.path.exists(os.path.join(dest, "harvest.json")):
    return "cached"
  shutil.rmtree(dest + ".part", ignore_errors=True)
  url, filename, size, sha = uri
  with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
    deb = os.path.join(tmp, filename)
    h = hashlib.sha256()
    try:
      with urllib.request.urlopen(url, timeout=120) as r, open(deb, "wb") as f:
        while block := r.read(1 << 20):
          h.update(block)
          f.write(block)
    except OSError as e:
      return f"failed: {e}"
    if h.hexdigest() != sha or os.path.getsize(deb) != size:
      return "failed: sha256 or size differs from the archive index"
    catalogs = extract_catalogs(deb, dest + ".part")
  os.makedirs(dest + ".part", exist_ok=True)
  with open(os.path.join(dest + ".part", "harvest.json"), "w", encoding="utf-8") as f:
    json.dump({"package": package, "version": version, "source": source,
               "deb": filename, "sha256": sha, "catalogs": catalogs}, f, indent=1)
  os.replace(dest + ".part", dest)
  return "ok"


def fetch(packages_path: str, out_dir: str, workers: int = 12) -> dict[str, str]:
  """Fetches every pinned package into `out_dir` (resumable); returns statuses."""
  rows = read_packages(packages_path)
  os.makedirs(out_dir, exist_ok=True)
  todo = [r for r in rows if not os.path.exists(os.path.join(out_dir, r[0], "harvest.json"))]
  status = {r[0]: "cached" for r in rows if r not in todo}
  uris = download_uris(todo)
  for p, _, _ in todo:
    if p not in uris:
      status[p] = "failed: not in the archive index"
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futs = {pool.submit(fetch_one, p, v, s, uris[p], out_dir): p
            for p, v, s in todo if p in uris}
    for fut in tqdm(concurrent.futures.as_completed(futs), total=len(futs), desc="packages"):
      status[futs[fut]] = fut.result()
  failed = {p: s for p, s in status.items() if s.startswith("failed")}
  for p, s in sorted(failed.items()):
    print(f"{p}: {s}", file=sys.stderr)
  return status


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="cmd", required=True)
  d = sub.add_parser("discover", help="pin the packages that ship German catalogs")
  d.add_argument("--packages", required=True)
  f = sub.add_parser("fetch", help="download and unpack the pinned packages")
  f.add_argument("--packages", required=True)
  f.add_argument("--out", required=True)
  f.add_argument("--workers", type=int, default=12)
  args = parser.parse_args(argv)
  if args.cmd == "discover":
    print(f"pinned {discover(args.packages)} packages in {args.packages}")
  else:
    status = fetch(args.packages, args.out, args.workers)
    ok = sum(s in ("ok", "cached") for s in status.values())
    print(f"{ok} of {len(status)} packages fetched into {args.out}")


if __name__ == "__main__":
  main(sys.argv[1:])
