"""The README's main job: the bundled pair on gettext_en_de, method by method.

    python -m spec_cascade_jax.main --gin_file=configs/demo.gin

For each decoding setting it measures quality (BLEU / chrF on validation
examples, batched) and latency (batch 1, relative to verifier-only decoding
timed in the same run; evaluation/latency.py), prints one table and saves it
as JSON. Progress is shown with tqdm.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Setting:
  method: str
  rule: str = "token_v3"
  alpha: float = 0.0
  num_draft_tokens: int = 5

  @property
  def label(self) -> str:
    if self.method in ("spec_cascade", "token_cascade", "oracle_cascade"):
      return f"{self.method}[{self.rule}] α={self.alpha:g}"
    if self.method in ("lossy", "bild", "seq_cascade"):
      return f"{self.method} α={self.alpha:g}"
    if self.method == "speculative":
      return f"speculative γ={self.num_draft_tokens}"
    return self.method


DEFAULT_SETTINGS = (
    Setting("verifier"), Setting("drafter"),
    Setting("speculative", num_draft_tokens=3), Setting("speculative", num_draft_tokens=5),
    Setting("lossy", alpha=0.3),
    Setting("token_cascade", rule="chow", alpha=0.4),
    Setting("spec_cascade", rule="chow", alpha=0.4),
    Setting("spec_cascade", rule="opt", alpha=0.5),
    Setting("spec_cascade", rule="token_v3", alpha=0.3),
    Setting("spec_cascade", rule="token_v3", alpha=0.6),
)


def _decode(drafter, verifier, ids, s: Setting, max_new_tokens: int):
  from spec_cascade_jax.decoding.api import generate
  return generate(drafter, verifier, ids, method=s.method, rule=s.rule, alpha=s.alpha,
                  num_draft_tokens=s.num_draft_tokens, temperature=0.0,
                  max_new_tokens=max_new_tokens)


def run_demo(drafter: str = "demo-drafter", verifier: str = "demo-verifier",
             vocabulary: str = "demo", split: str = "validation",
             num_quality_examples: int = 300, num_latency_examples: int = 40,
             repeats: int = 3, batch_size: int = 64, max_new_tokens: int = 64,
             settings: Sequence[Setting] = DEFAULT_SETTINGS,
             output_dir: str = "runs/demo") -> list[dict]:
  from tqdm.auto import tqdm
  from spec_cascade_jax.data.dataset import load_split
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.evaluation import latency, metrics
  from spec_cascade_jax.models.loading import load_model
  from spec_cascade_jax.training.recipes import pad_batch

  vocab = load_vocabulary(vocabulary)
  q_model, p_model = load_model(drafter), load_model(verifier)
  data = load_split(split)
  quality_ex = data[:num_quality_examples]
  latency_ex = data[:num_latency_examples]
  enc = [vocab.encode(e["en"])[:127] + [1] for e in quality_ex]
  order = np.argsort([len(x) for x in enc], kind="stable")
  lat_inputs = [latency.pad_to_bucket(vocab.encode(e["en"])[:127] + [1]) for e in latency_ex]

  rows = []
  for s in tqdm(settings, desc="demo settings"):
    preds = [None] * len(enc)
    stats = {}
    for start in range(0, len(order), batch_size):
      idx = order[start:start + batch_size]
      res = _decode(q_model, p_model, pad_batch([enc[i] for i in idx]), s, max_new_tokens)
      for i, row in zip(idx, res.tokens):
        preds[i] = vocab.decode([int(t) for t in row])
      for k, v in res.stats.items():
        stats[k] = stats.get(k, 0) + int(v.sum())
    refs = [e["de"] for e in quality_ex]
    quality = metrics.bleu_and_chrf(refs, preds)
    secs = latency.time_per_example(
        lambda ids: _decode(q_model, p_model, ids, s, max_new_tokens), lat_inputs, repeats)
    rows.append({"setting": dataclasses.asdict(s), "label": s.label, **quality,
                 "latency_s": float(secs.sum()), "stats": stats})
  base = next(r["latency_s"] for r in rows if r["setting"]["method"] == "verifier")
  for r in rows:
    r["relative_latency"] = r["latency_s"] / base
    st = r["stats"]
    r["tokens_per_verifier_call"] = st["num_tokens"] / max(
        st["rounds"] + st["sequential_verifier_calls"], 1)
    r["deferral_rate"] = st["deferrals"] / max(st["num_tokens"], 1)
  print(format_table(rows))
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, "demo_results.json"), "w") as f:
    json.dump({"created": time.strftime("%Y-%m-%d %H:%M:%S"), "drafter": drafter,
               "verifier": verifier, "split": split, "rows": rows}, f, indent=1)
  return rows


def format_table(rows: Sequence[dict]) -> str:
  head = f"{'setting':34s} {'BLEU':>6s} {'chrF':>6s} {'rel.lat':>8s} {'tok/vcall':>9s} {'defer':>6s}"
  lines = [head, "-" * len(head)]
  for r in rows:
    lines.append(f"{r['label']:34s} {r['bleu']:6.2f} {r['chrf']:6.2f} "
                 f"{r['relative_latency']:8.3f} {r['tokens_per_verifier_call']:9.2f} "
                 f"{r['deferral_rate']:6.3f}")
  return "\n".join(lines)
