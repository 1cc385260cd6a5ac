"""Shared helpers of the benchmark scripts: models, inputs, timing, tables.

Timing protocol (docs/design.md §6.4): compile excluded (every callable runs
once untimed), methods timed INTERLEAVED (round-robin over methods inside each
repeat) so load on a shared machine hits all of them alike, and every speed-up
is a ratio of two numbers measured in the same process. Both the minimum and
the median of the repeats are kept: the minimum is the better estimate of the
cost on a busy machine, the median the honest one on a quiet one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # `python benchmarks/x.py` from a checkout
  sys.path.insert(0, _REPO)

import jax  # noqa: E402  (after the path fix above)
import jax.numpy as jnp  # noqa: E402

# The project's one padding helper, as `common.pad_batch` for the scripts.
from spec_cascade_jax.decoding.padding import pad_batch  # noqa: E402,F401
# The step-cost timing the sweep's cost model uses, one definition for the scripts.
from spec_cascade_jax.evaluation.step_costs import (  # noqa: E402,F401
    interleaved_times, step_loop, step_time)

@dataclasses.dataclass(frozen=True)
class DemoPair:
  """The bundled drafter/verifier pair and the data it was trained for."""
  drafter: str
  verifier: str
  vocabulary: str
  corpus: str


# The bundled pair, the one the main job runs (configs/models/demo_pair.gin;
# tests/test_configs.py keeps the two equal).
DEMO = DemoPair("demo-drafter", "demo-verifier", "gettext", "gettext_en_de")
EOS = 1


def demo_pair(random_weights: bool = False, seed: int = 0):
  """(drafter, verifier, source): the bundled pair (DEMO), or random weights
  of its shapes (its bundled config.json).

  source is "bundled" or "random" (acceptance rates and BLEU of random
  weights mean nothing, per-call costs still do).
  """
  from spec_cascade_jax.models.loading import load_model
  from spec_cascade_jax.models.t5 import T5Model
  drafter, verifier = load_model(DEMO.drafter), load_model(DEMO.verifier)
  if not random_weights:
    return drafter, verifier, "bundled"
  return (T5Model.init(drafter.config, jax.random.PRNGKey(seed)),
          T5Model.init(verifier.config, jax.random.PRNGKey(seed + 1)), "random")


def gettext_examples(n: int, split: str = "validation", max_input_tokens: int = 48) -> list[dict]:
  """`n` examples of the bundled corpus whose encoded input fits (in the
  bundled vocabulary), spread evenly over the split (it is sorted by English
  text: a prefix is the "# …" / "%s …" block, unrepresentative), as the main
  job picks its examples.

  Returns dicts {"ids": list[int] (EOS appended, as in training), "en", "de"}.
  """
  from spec_cascade_jax.data.dataset import load_split
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.evaluation.infer import spread_indices
  vocab = load_vocabulary(DEMO.vocabulary)
  fits = []
  for ex in load_split(split, DEMO.corpus):
    ids = list(vocab.encode(ex["en"])) + [EOS]
    if len(ids) <= max_input_tokens:
      fits.append({"ids": ids, "en": ex["en"], "de": ex["de"]})
  out = [fits[i] for i in spread_indices(len(fits), n)] if fits else []
  if not out:
    raise ValueError(f"No {split} example has at most {max_input_tokens} input tokens; "
                     "raise --max-input-tokens.")
  return out


def first_call_seconds(fn: Callable[[], object]) -> float:
  """Wall time of the first call (compilation + one run)."""
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def summary(ts: Sequence[float]) -> dict[str, float]:
  return {"min": float(min(ts)), "median": float(statistics.median(ts))}


def hf_cache():
  """An empty, lazily sized encoder-decoder cache for one HF `generate` call.

  transformers (seen with 5.24) sizes the default cache by `config.num_layers`,
  the *encoder* depth, and raises IndexError for a decoder deeper than its
  encoder (the bundled verifier is 3+6). A cache without a config grows per
  layer. Make a new one per call: `generate` fills it.
  """
  from transformers.cache_utils import DynamicCache, EncoderDecoderCache
  return EncoderDecoderCache(DynamicCache(), DynamicCache())


def load_hf_clean(model_cls, path: str):
  """`model_cls.from_pretrained(path)` (a transformers class), float32, eval;
  fails when any weight is missing, unexpected or mismatched."""
  model, info = model_cls.from_pretrained(path, output_loading_info=True)
  bad = {k: v for k, v in info.items() if v}
  if bad:
    raise RuntimeError(f"transformers did not load {path} cleanly: {bad}")
  return model.float().eval()


def machine() -> dict[str, object]:
  """What the figures were measured on (for BENCHMARKS.md and the JSON files)."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  info = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
          "cpu": cpu, "cpu_count": os.cpu_count(), "jax": jax.__version__,
          "python": platform.python_version()}
  if hasattr(os, "getloadavg"):
    info["load_avg_1m"] = round(os.getloadavg()[0], 2)
  return info


def header(info: dict) -> str:
  """The '# date  cpu xN  jax V  load L' line that starts a benchmark's table."""
  return (f"# {info['date']}  {info['cpu']} x{info['cpu_count']}  jax {info['jax']}  "
          f"load {info.get('load_avg_1m')}")


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
  """rows of dicts -> fixed-width text. columns: (key, header, format spec)."""
  cells = [[h for _, h, _ in columns]]
  for r in rows:
    line = []
    for key, _, fmt in columns:
      v = r.get(key)
      line.append("-" if v is None else format(v, fmt) if fmt else str(v))
    cells.append(line)
  widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
  out = []
  for n, c in enumerate(cells):
    out.append("  ".join(s.ljust(w) if i == 0 else s.rjust(w)
                         for i, (s, w) in enumerate(zip(c, widths))))
    if n == 0:
      out.append("-" * len(out[0]))
  return "\n".join(out)


def write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=float)
  print(f"wrote {path}")


def block(x):
  """Blocks on every array leaf of x; returns x."""
  return jax.block_until_ready(x)


def as_int32(x) -> jax.Array:
  return jnp.asarray(x, jnp.int32)
