"""Quality metrics in seqio style: `fn(targets, predictions) -> {name: float}`.

BLEU and chrF come from sacrebleu (a core dependency), ROUGE from rouge-score
(imported when first used: it is in the `seqio` extra). Scores are on a 0-100
scale, like t5.evaluation.metrics, so BLEU and ROUGE tables read the same.

    bleu(["Datei öffnen"], ["Datei öffnen"])   # {"bleu": 100.0}
"""

from __future__ import annotations

from typing import Sequence


def _check(targets: Sequence, predictions: Sequence) -> tuple[list[str], list[str]]:
  targets, predictions = list(targets), list(predictions)
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions; "
                     "pass one prediction per target")
  if not targets:
    raise ValueError("no targets given: metrics need at least one example")
  if targets and isinstance(targets[0], (list, tuple)):
    raise ValueError("targets must be strings (one reference each); got sequences")
  return [str(t) for t in targets], [str(p) for p in predictions]


def bleu(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Corpus BLEU with T5's settings (sacrebleu, intl tokenizer, exp smoothing)."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  targets, predictions = _check(targets, predictions)
  score = sacrebleu.corpus_bleu(predictions, [targets], smooth_method="exp",
                                smooth_value=0.0, force=False, lowercase=False,
                                tokenize="intl", use_effective_order=False)
  return {"bleu": float(score.score)}


def chrf(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Corpus chrF (character 6-grams, beta 2; sacrebleu defaults)."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  targets, predictions = _check(targets, predictions)
  return {"chrf": float(sacrebleu.corpus_chrf(predictions, [targets]).score)}


def sentence_scores(name: str, targets: Sequence[str],
                    predictions: Sequence[str]) -> list[float]:
  """Per-example scores (0-100) of metric `name`: "chrf" (sentence chrF,
  sacrebleu defaults), "bleu" (sentence BLEU, the settings of `bleu` above;
  sacrebleu smooths it per sentence) or "exact_match" (100 where the stripped
  strings are equal, as `accuracy`). Calibration's sequence losses use them."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  targets, predictions = _check(targets, predictions)
  if name == "chrf":
    return [float(sacrebleu.sentence_chrf(p, [t]).score) for t, p in zip(targets, predictions)]
  if name == "bleu":
    return [float(sacrebleu.sentence_bleu(p, [t], smooth_method="exp", tokenize="intl",
                                          lowercase=False).score)
            for t, p in zip(targets, predictions)]
  if name == "exact_match":
    return [100.0 * (t.strip() == p.strip()) for t, p in zip(targets, predictions)]
  raise ValueError(f"unknown sentence metric {name!r}; use chrf, bleu or exact_match")


def rouge(targets: Sequence[str], predictions: Sequence[str],
          score_keys: Sequence[str] = ("rouge1", "rouge2", "rougeLsum")) -> dict[str, float]:
  """Mean F-measure ROUGE over examples, as t5.evaluation.metrics.rouge.

  rougeLsum splits summaries into sentences at newlines, so predictions that
  are one line are scored as one sentence (as in T5's XSum/CNN-DM numbers).
  """
  try:
    from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("ROUGE needs rouge-score: pip install rouge-score "
                      "(or the project's [seqio] extra)") from e
  targets, predictions = _check(targets, predictions)
  scorer = rouge_scorer.RougeScorer(list(score_keys), use_stemmer=True)
  totals = {k: 0.0 for k in score_keys}
  for t, p in zip(targets, predictions):
    scores = scorer.score(target=t, prediction=p)
    for k in score_keys:
      totals[k] += scores[k].fmeasure
  # Plain mean (T5 reports the bootstrap median, which is random and ~equal).
  return {k: 100.0 * v / len(targets) for k, v in totals.items()}


def bleu_and_chrf(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Both translation metrics in one dict (for evaluation scripts)."""
  return {**bleu(targets, predictions), **chrf(targets, predictions)}


def accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Exact-match accuracy (0-100) of postprocessed answers (GSM8K's final numbers)."""
  targets, predictions = _check(targets, predictions)
  hits = sum(t.strip() == p.strip() for t, p in zip(targets, predictions))
  return {"accuracy": 100.0 * hits / len(targets)}
