"""How well a drafter/verifier pair translates, judged as a user would.

    report = evaluate_pair({"demo-drafter": d, "demo-verifier": v}, vocab, rows)

For every model, greedy decoding of every row's English (verifier-only
decoding with the project's kernel):
- `bleu`, `chrf`: corpus scores against the references (`metrics.bleu`, the
  project's one BLEU: sacrebleu with T5's settings);
- `no_eos_rate`: share of outputs that reach `max_new_tokens` without EOS
  (repetition loops, mostly);
- `placeholders_kept`: among sources with format placeholders, the share of
  outputs that carry exactly the same ones (`data.placeholders`), and
  `placeholder_mismatches`: the placeholders most often lost or added.
Once per split: `copy_bleu`, the BLEU of returning the English unchanged.
Software messages are full of placeholders, names and markup, so copying
scores well above zero; a model that only copies must not pass for a
translator, and every BLEU is reported beside it.
For the pair: `agreement`, the share of the verifier's greedy tokens (EOS
included) that the drafter's argmax reproduces when fed the verifier's own
prefix (teacher forcing): the per-token acceptance speculative decoding can
expect at T = 0.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.data import placeholders
from spec_cascade_jax.decoding.padding import pad_batch
from spec_cascade_jax.data.vocab import encode_with_eos
from spec_cascade_jax.decoding.greedy import greedy_ids
from spec_cascade_jax.evaluation import metrics


def encode_sources(vocab, sources: Sequence[str], max_len: int = 128) -> list[list[int]]:
  """English texts -> input ids with EOS appended, truncated to `max_len`."""
  return [encode_with_eos(vocab, x, max_len) for x in sources]


def copy_bleu(rows: Sequence[Mapping[str, str]]) -> float:
  """BLEU of the copy-the-source baseline."""
  return metrics.bleu([r["de"] for r in rows], [r["en"] for r in rows])["bleu"]


def no_eos_rate(outputs: Sequence[Sequence[int]]) -> float:
  """Share of greedy outputs (ids as `greedy_ids` returns them) without EOS."""
  return float(np.mean([not o or o[-1] != 1 for o in outputs])) if outputs else 0.0


def drafter_hits(drafter, sources: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]],
                 batch_size: int = 64) -> list[np.ndarray]:
  """Per output, [len(output)] bool: where the drafter's argmax, fed the
  output's own prefix (teacher forcing) and the source, equals its token.

  sources: token-id inputs (EOS appended); outputs: e.g. the verifier's
  greedy outputs (`decoding.greedy.greedy_ids`, EOS kept).
  """
  hits = []
  for s in range(0, len(sources), batch_size):
    outs = outputs[s:s + batch_size]
    longest = max((len(o) for o in outs), default=0) or 1
    longest = -(-longest // 16) * 16  # few shapes, few compilations
    dec_in = np.zeros((len(outs), longest), np.int32)
    for r, o in enumerate(outs):
      dec_in[r, 1:len(o)] = o[:-1]
    pred = np.asarray(jnp.argmax(drafter.logits(
        jnp.asarray(pad_batch(sources[s:s + batch_size])), jnp.asarray(dec_in)), -1))
    hits += [pred[r, :len(o)] == np.asarray(o) for r, o in enumerate(outs)]
  return hits


def agreement(drafter, sources: Sequence[Sequence[int]],
              verifier_outputs: Sequence[Sequence[int]]) -> float:
  """Teacher-forced argmax agreement over all of the verifier's tokens."""
  hits = drafter_hits(drafter, sources, verifier_outputs)
  return float(np.concatenate(hits).mean()) if hits else 0.0


def evaluate_model(model, vocab, rows: Sequence[Mapping[str, str]], max_new_tokens: int = 64,
                   batch_size: int = 128, progress: str | None = None
                   ) -> tuple[dict, list[list[int]]]:
  """Greedy quality of one model on `rows`; returns (scores, output ids).
  `progress`: a tqdm description (None: silent)."""
  sources = [r["en"] for r in rows]
  refs = [r["de"] for r in rows]
  outs = greedy_ids(model, encode_sources(vocab, sources), batch_size, max_new_tokens,
                    progress)
  preds = [vocab.decode(o) for o in outs]
  scores = {**metrics.bleu(refs, preds), **metrics.chrf(refs, preds),
            "no_eos_rate": no_eos_rate(outs),
            "placeholders_kept": placeholders.preservation_rate(sources, preds),
            "placeholder_mismatches": placeholders.mismatches(sources, preds)}
  return scores, outs


def evaluate_pair(models: Mapping[str, object], vocab, rows: Sequence[Mapping[str, str]],
                  max_new_tokens: int = 64, batch_size: int = 128, samples: int = 0,
                  progress: bool = False) -> dict:
  """Scores of each model (drafter first, verifier last), the copy baseline and
  the drafter's agreement with the verifier's greedy outputs. `samples` > 0
  keeps the first that many sources and each model's outputs for them (a
  record that later runs can check their decoding against)."""
  names = list(models)
  report = {"examples": len(rows), "copy_bleu": copy_bleu(rows), "models": {}}
  outputs = {}
  for name in names:
    report["models"][name], outputs[name] = evaluate_model(
        models[name], vocab, rows, max_new_tokens, batch_size, name if progress else None)
  if samples:
    report["samples"] = {"en": [r["en"] for r in rows[:samples]],
                         **{n: [vocab.decode(o) for o in outputs[n][:samples]] for n in names}}
  if len(names) >= 2:
    sources = encode_sources(vocab, [r["en"] for r in rows])
    report["agreement"] = agreement(models[names[0]], sources, outputs[names[-1]])
  return report
