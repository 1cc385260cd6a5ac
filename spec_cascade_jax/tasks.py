"""seqio task registrations (needs the `seqio` extra: seqio, TensorFlow, TFDS).

    from spec_cascade_jax import tasks
    tasks.register_tasks(t5_vocab_path="gs://t5-data/vocabs/cc_all.32000/sentencepiece.model")
    task = seqio.get_mixture_or_task("gettext_en_de")

Tasks:
- `gettext_en_de` and `gettext_en_de`: the embedded EN->DE corpora (the
  shipped splits, read by `data.dataset.load_split`), each with the
  vocabulary trained on it (`dataset.CORPUS_VOCABULARIES`: demo, gettext),
  BLEU + chrF. Inputs are the English message as in the corpus, with no task
  prefix.
- `wmt_t2t_ende` (TFDS `wmt_t2t_translate/de-en`), `xsum` (TFDS `xsum`),
  `cnn_dailymail` (TFDS `cnn_dailymail`): the paper's tasks for users with the
  data and real T5 checkpoints. They use T5's prefixes ("translate English to
  German: ", "summarize: ") and T5's SentencePiece vocabulary with 100 extra
  ids, from `t5_vocab_path` or the SPEC_CASCADE_T5_VOCAB environment variable.
  Without either they are still registered, and any use of their vocabulary
  raises an error that says how to set it.

- `wmt_t2t_ende_5shot` (the paper's Gemma setting) and `gsm8k_8shot` (TFDS
  `gsm8k`, chain-of-thought answers ending "#### N"): few-shot prompts for
  decoder-only LMs, built by `seqio.experimental.FewshotDataSource` (fixed
  shots from the train split) and `fewshot_preprocessor` in the format of
  `evaluation/prompts.py`. Their features are text: `infer.load_task`
  tokenizes the prompts with the VOCABULARY it is given (the LM's Hugging
  Face directory). Scores: BLEU + chrF on the answer's first line; accuracy
  of the final number.

seqio and TensorFlow are imported inside the functions here: `import
spec_cascade_jax` (and this module) must stay free of TensorFlow. Importing
this module hooks `register_tasks` into evaluation.infer.SEQIO_TASK_REGISTRARS,
so `infer.load_task` registers the project's tasks on first use.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from spec_cascade_jax.evaluation import infer

GETTEXT_TASK = "gettext_en_de"
WMT_TASK = "wmt_t2t_ende"
XSUM_TASK = "xsum"
CNN_DM_TASK = "cnn_dailymail"
TFDS_TASKS = (WMT_TASK, XSUM_TASK, CNN_DM_TASK)
WMT_5SHOT_TASK = "wmt_t2t_ende_5shot"
GSM8K_TASK = "gsm8k_8shot"
PROMPTED_TASKS = (WMT_5SHOT_TASK, GSM8K_TASK)
T5_VOCAB_ENV = "SPEC_CASCADE_T5_VOCAB"
T5_EXTRA_IDS = 100  # T5 checkpoints embed 32000 pieces + 100 sentinels

# (TFDS name, input key, target key, prefix, metrics) per real-world task.
_TFDS_SPECS = {
    WMT_TASK: ("wmt_t2t_translate/de-en:1.0.0", "en", "de",
               "translate English to German: ", "translation"),
    XSUM_TASK: ("xsum:1.1.0", "document", "summary", "summarize: ", "summary"),
    CNN_DM_TASK: ("cnn_dailymail:3.4.0", "article", "highlights", "summarize: ", "summary"),
}


def _import_seqio():
  try:
    import seqio  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("spec_cascade_jax.tasks needs seqio: pip install seqio "
                      "tensorflow-datasets rouge-score (the project's [seqio] extra)") from e
  return seqio


def resolve_t5_vocab_path(t5_vocab_path: str | None = None) -> str | None:
  """The T5 vocabulary path: the argument, else $SPEC_CASCADE_T5_VOCAB, else None."""
  return t5_vocab_path or os.environ.get(T5_VOCAB_ENV) or None


def _missing_vocab_error() -> ValueError:
  return ValueError(
      "the T5 SentencePiece vocabulary is not configured: call "
      f"spec_cascade_jax.tasks.register_tasks(t5_vocab_path=...) or set {T5_VOCAB_ENV} "
      "to the path of T5's sentencepiece.model (e.g. cc_all.32000/sentencepiece.model)")


def _t5_vocabulary(seqio, path: str | None):
  """seqio's SentencePieceVocabulary, or one that fails clearly on first use."""
  if path is not None:
    return seqio.SentencePieceVocabulary(path, extra_ids=T5_EXTRA_IDS)

  class UnsetT5Vocabulary(seqio.SentencePieceVocabulary):
    """Stands in for T5's vocabulary until the user says where it is."""

    def _model_context(self):
      raise _missing_vocab_error()

  return UnsetT5Vocabulary("<unset: " + T5_VOCAB_ENV + ">", extra_ids=T5_EXTRA_IDS)


def _gettext_dataset_fn(split: str, shuffle_files: bool, seed: int | None = None, *,
                        corpus: str = GETTEXT_TASK):
  """tf.data over one shipped split of `corpus`; rows in file order (seqio shuffles)."""
  del shuffle_files, seed  # one file per split: nothing to shuffle at file level
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.data import dataset  # pylint: disable=g-import-not-at-top
  rows = dataset.load_split(split, corpus)
  # en, de and the corpus's provenance fields (all strings).
  return tf.data.Dataset.from_tensor_slices({
      k: tf.constant([r[k] for r in rows], dtype=tf.string) for k in rows[0]})


def _to_text2text(x: dict[str, Any], input_key: str, target_key: str, prefix: str):
  """{input_key, target_key} -> {inputs: prefix + input, targets: target}."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {"inputs": tf.strings.join([prefix, x[input_key]]), "targets": x[target_key]}


def _add(seqio, name: str, **kwargs) -> None:
  """TaskRegistry.add that replaces an existing task (idempotent registration)."""
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(name, **kwargs)


def register_tasks(t5_vocab_path: str | None = None) -> list[str]:
  """Registers the project's seqio tasks; safe to call again.

  Args:
    t5_vocab_path: T5 SentencePiece .model for the TFDS tasks; default
      $SPEC_CASCADE_T5_VOCAB. A later call with another path re-registers them.

  Returns:
    the registered task names.
  """
  seqio = _import_seqio()
  from spec_cascade_jax.data import dataset, vocab  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.evaluation import metrics  # pylint: disable=g-import-not-at-top

  for corpus, vocab_name in dataset.CORPUS_VOCABULARIES.items():
    sp = seqio.SentencePieceVocabulary(vocab.vocabulary_path(vocab_name), extra_ids=0)
    counts = {s: v["count"] for s, v in dataset.load_manifest(corpus)["splits"].items()}
    _add(seqio, corpus,
         source=seqio.FunctionDataSource(
             functools.partial(_gettext_dataset_fn, corpus=corpus), splits=dataset.SPLITS,
             num_input_examples=counts),
         preprocessors=[
             functools.partial(seqio.preprocessors.rekey,
                               key_map={"inputs": "en", "targets": "de"}),
             seqio.preprocessors.tokenize,
             seqio.preprocessors.append_eos,
         ],
         output_features={
             "inputs": seqio.Feature(sp, add_eos=True),
             "targets": seqio.Feature(sp, add_eos=True),
         },
         metric_fns=[metrics.bleu, metrics.chrf])

  t5_vocab = _t5_vocabulary(seqio, resolve_t5_vocab_path(t5_vocab_path))
  for name, (tfds_name, in_key, tgt_key, prefix, kind) in _TFDS_SPECS.items():
    metric_fns = [metrics.bleu, metrics.chrf] if kind == "translation" else [metrics.rouge]
    _add(seqio, name,
         source=seqio.TfdsDataSource(tfds_name=tfds_name),
         preprocessors=[
             seqio.map_over_dataset(functools.partial(
                 _to_text2text, input_key=in_key, target_key=tgt_key, prefix=prefix)),
             seqio.preprocessors.tokenize,
             seqio.CacheDatasetPlaceholder(),
             seqio.preprocessors.append_eos_after_trim,
         ],
         output_features={
             "inputs": seqio.Feature(t5_vocab, add_eos=True),
             "targets": seqio.Feature(t5_vocab, add_eos=True),
         },
         metric_fns=metric_fns)
  _register_prompted_tasks(seqio)
  return [*dataset.CORPUS_VOCABULARIES, *TFDS_TASKS, *PROMPTED_TASKS]


# (TFDS name, its splits, input key, target key, shots, format, postprocessor,
# metrics); the shots come from "train".
def _prompted_specs():
  from spec_cascade_jax.evaluation import metrics, prompts  # pylint: disable=g-import-not-at-top
  return {
      WMT_5SHOT_TASK: ("wmt_t2t_translate/de-en:1.0.0", ("train", "validation", "test"),
                       "en", "de", 5, prompts.TRANSLATE_EN_DE, prompts.answer_line,
                       [metrics.bleu, metrics.chrf]),
      GSM8K_TASK: ("gsm8k:1.0.0", ("train", "test"), "question", "answer", 8,
                   prompts.GSM8K, prompts.final_number, [metrics.accuracy]),
  }


def _to_text_pair(x: dict[str, Any], input_key: str, target_key: str):
  return {"inputs": x[input_key], "targets": x[target_key]}


def _register_prompted_tasks(seqio) -> None:
  """Few-shot text tasks for decoder-only LMs (module docstring)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  text = seqio.Feature(seqio.PassThroughVocabulary(1), add_eos=False, dtype=tf.string,
                       rank=0)
  for name, (tfds_name, splits, in_key, tgt_key, shots, fmt, post, metric_fns) in \
      _prompted_specs().items():
    pair = seqio.map_over_dataset(functools.partial(_to_text_pair, input_key=in_key,
                                                    target_key=tgt_key))
    _add(seqio, name,
         source=seqio.experimental.FewshotDataSource(
             seqio.TfdsDataSource(tfds_name=tfds_name, splits=splits), num_shots=shots,
             train_preprocessors=[pair], eval_preprocessors=[pair],
             eval_on_fixed_exemplars=True),
         preprocessors=[fmt.seqio_preprocessor()],
         output_features={"inputs": text, "targets": text},
         postprocess_fn=post, metric_fns=metric_fns)


# evaluation.infer.load_task calls this when it meets a seqio task name that
# seqio does not know yet: the project's tasks register on first use, and the
# evaluation package never imports this entry-point module (docs/design.md §5).
if register_tasks not in infer.SEQIO_TASK_REGISTRARS:
  infer.SEQIO_TASK_REGISTRARS.append(register_tasks)
