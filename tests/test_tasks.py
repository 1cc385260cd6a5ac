"""seqio task registrations and the metric functions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spec_cascade_jax.evaluation import metrics


# ---------------------------------------------------------------------------
# Metrics (no seqio needed).


def test_bleu_and_chrf():
  refs = ["Die Datei wurde nicht gefunden.", "Konnte »%s« nicht lesen"]
  assert metrics.bleu(refs, refs) == {"bleu": pytest.approx(100.0)}
  assert metrics.chrf(refs, refs) == {"chrf": pytest.approx(100.0)}
  worse = ["Datei nicht gefunden.", "Konnte %s nicht lesen"]
  assert 0.0 < metrics.bleu(refs, worse)["bleu"] < 100.0
  assert metrics.chrf(refs, worse)["chrf"] < 100.0
  assert metrics.bleu(refs, ["xyz", "qqq"])["bleu"] == pytest.approx(0.0)
  assert metrics.bleu_and_chrf(refs, refs).keys() == {"bleu", "chrf"}
  with pytest.raises(ValueError, match="predictions"):
    metrics.bleu(refs, refs[:1])


def test_rouge():
  pytest.importorskip("rouge_score")
  out = metrics.rouge(["the cat sat on the mat"], ["the cat sat"])
  # unigram P = 3/3, R = 3/6 -> F = 2/3; bigrams P = 2/2, R = 2/5 -> F = 4/7.
  assert out["rouge1"] == pytest.approx(200 / 3)
  assert out["rouge2"] == pytest.approx(400 / 7)
  assert metrics.rouge(["a b c"], ["a b c"])["rougeLsum"] == pytest.approx(100.0)


def test_tasks_module_does_not_import_tensorflow():
  code = ("import sys\nimport spec_cascade_jax.tasks, spec_cascade_jax.evaluation.metrics\n"
          "assert 'tensorflow' not in sys.modules and 'seqio' not in sys.modules\nprint('ok')\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "ok"


# ---------------------------------------------------------------------------
# seqio tasks (skipped without the seqio extra).


@pytest.fixture(scope="module")
def seqio_and_tasks():
  seqio = pytest.importorskip("seqio")
  from spec_cascade_jax import tasks  # pylint: disable=g-import-not-at-top
  return seqio, tasks


@pytest.mark.slow
def test_gettext_task_tokenizes_with_eos(seqio_and_tasks, monkeypatch):
  seqio, tasks = seqio_and_tasks
  monkeypatch.delenv(tasks.T5_VOCAB_ENV, raising=False)
  names = tasks.register_tasks()
  assert names == ["gettext_en_de", "wmt_t2t_ende", "xsum",
                   "cnn_dailymail", "wmt_t2t_ende_5shot", "gsm8k_8shot"]
  assert tasks.register_tasks() == names  # idempotent
  from spec_cascade_jax.data import dataset, vocab  # pylint: disable=g-import-not-at-top
  demo = vocab.load_vocabulary("gettext")
  task = seqio.get_mixture_or_task("gettext_en_de")
  assert task.splits == ("train", "validation", "test")
  rows = dataset.load_split("validation")[:5]
  ds = task.get_dataset(sequence_length=None, split="validation", shuffle=False,
                        try_in_mem_cache=False)
  for row, ex in zip(rows, ds.as_numpy_iterator()):
    assert ex["inputs_pretokenized"].decode() == row["en"]  # no prefix
    assert ex["targets_pretokenized"].decode() == row["de"]
    assert ex["inputs"].tolist() == demo.encode(row["en"]) + [1]
    assert ex["targets"].tolist() == demo.encode(row["de"]) + [1]
  assert {m.__name__ for m in task.metric_fns} == {"bleu", "chrf"}
  assert task.num_input_examples("test") == len(dataset.load_split("test", "gettext_en_de"))


@pytest.mark.parametrize("task", ["nope", "wmt_t2t_ende"])
def test_an_unknown_task_without_seqio_lists_the_known_tasks(monkeypatch, task):
  """Without seqio, a name that is not bundled is unknown: the error lists the
  bundled tasks and says what seqio's need, before any data is read."""
  from spec_cascade_jax.decoding import UsageError  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.evaluation import infer  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(sys.modules, "seqio", None)   # import seqio raises ImportError
  for check in (infer.check_task, infer.load_task):
    with pytest.raises(UsageError) as e:
      check(task)
    msg = str(e.value)
    assert msg.startswith(f"unknown task {task!r}. Known tasks: gettext_en_de (bundled), "
                          "their k-shot prompts for decoder-only LMs"), msg
    assert "seqio tasks, which need seqio (not installed: pip install seqio" in msg
    assert "is a seqio task" not in msg and "\n" not in msg
  infer.check_task("gettext_en_de")          # bundled: no seqio needed
  infer.check_task("gettext_en_de_5shot")    # its k-shot prompts


def test_the_offline_task_of_each_bundled_corpus_reads_that_corpus():
  """The main job reads the bundled gettext_en_de without seqio, with the
  vocabulary it is given."""
  from spec_cascade_jax.data import dataset, vocab  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.evaluation import infer  # pylint: disable=g-import-not-at-top
  for corpus, vocab_name in dataset.CORPUS_VOCABULARIES.items():
    data = infer.load_task(corpus, "test", vocabulary=vocab_name, num_examples=4,
                           max_input_length=256)
    rows = dataset.load_split("test", corpus)
    assert data.targets[0] == rows[0]["de"] and data.inputs[-1] in {r["en"] for r in rows}
    assert data.input_ids[0] == vocab.load_vocabulary(vocab_name).encode(rows[0]["en"]) + [1]


@pytest.mark.slow
def test_t5_tasks_need_a_vocab_path(seqio_and_tasks, monkeypatch):
  seqio, tasks = seqio_and_tasks
  monkeypatch.delenv(tasks.T5_VOCAB_ENV, raising=False)
  tasks.register_tasks()
  vocab = seqio.get_mixture_or_task("xsum").output_features["inputs"].vocabulary
  with pytest.raises(ValueError, match=tasks.T5_VOCAB_ENV):
    vocab.encode("summarize: x")


_IN_CHILD = "SCJ_TFDS_TEST_CHILD"


def _run_in_a_fresh_process(request) -> bool:
  """Runs the calling test in a child pytest; True in the parent (done).

  TFDS's mock_data patches TensorFlow Datasets and tf.data starts threads of
  its own: both stay out of the suite's main process this way.
  """
  if os.environ.get(_IN_CHILD):
    return False
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       f"{request.node.path}::{request.node.name}"],
      env=dict(os.environ, **{_IN_CHILD: "1"}), capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-3000:]
  return True


@pytest.mark.slow
@pytest.mark.parametrize("name,prefix,metric", [
    ("wmt_t2t_ende", "translate English to German: ", "bleu"),
    ("xsum", "summarize: ", "rouge"),
    ("cnn_dailymail", "summarize: ", "rouge"),
])
def test_tfds_tasks_with_mock_data(seqio_and_tasks, monkeypatch, request, name, prefix,
                                   metric):
  if _run_in_a_fresh_process(request):
    return
  seqio, tasks = seqio_and_tasks
  tfds = pytest.importorskip("tensorflow_datasets")
  from spec_cascade_jax.data import vocab  # pylint: disable=g-import-not-at-top
  demo_path = vocab.vocabulary_path("gettext")
  # The environment variable is the second way to say where T5's vocab is.
  monkeypatch.setenv(tasks.T5_VOCAB_ENV, demo_path)
  tasks.register_tasks()
  task = seqio.get_mixture_or_task(name)
  v = task.output_features["targets"].vocabulary
  assert v.sentencepiece_model_file == demo_path and v.vocab_size == 8000 + 100
  assert metric in {m.__name__ for m in task.metric_fns}
  demo = vocab.load_vocabulary(demo_path)
  with tfds.testing.mock_data(num_examples=2):
    ds = task.get_dataset(sequence_length={"inputs": 512, "targets": 512}, split="validation",
                          shuffle=False, try_in_mem_cache=False)
    examples = list(ds.as_numpy_iterator())
  assert len(examples) == 2
  for ex in examples:
    text = ex["inputs_pretokenized"].decode()
    assert text.startswith(prefix)
    assert ex["inputs"].tolist() == demo.encode(text) + [1]
    assert ex["targets"].tolist() == demo.encode(ex["targets_pretokenized"].decode()) + [1]


@pytest.mark.slow
@pytest.mark.parametrize("name,split,shots,marker", [
    ("wmt_t2t_ende_5shot", "validation", 5, "English: "),
    ("gsm8k_8shot", "test", 8, "Question: "),
], ids=["wmt", "gsm8k"])
def test_prompted_tfds_tasks_with_mock_data(seqio_and_tasks, monkeypatch, request, name,
                                            split, shots, marker):
  """Few-shot text tasks: the prompt has the format of evaluation/prompts.py
  with `shots` fixed shots, and load_task tokenizes it with the vocabulary
  it is given (here the demo SentencePiece; an LM's tokenizer.json in use)."""
  if _run_in_a_fresh_process(request):
    return
  seqio, tasks = seqio_and_tasks
  tfds = pytest.importorskip("tensorflow_datasets")
  from spec_cascade_jax.data import vocab  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.evaluation import infer, prompts  # pylint: disable=g-import-not-at-top
  tasks.register_tasks()
  fmt = {"wmt_t2t_ende_5shot": prompts.TRANSLATE_EN_DE, "gsm8k_8shot": prompts.GSM8K}[name]
  # FewshotDataSource asks for the prepared files' shards, which mock data has
  # none of; with none listed it shards by example, as for any small source.
  monkeypatch.setattr(seqio.TfdsDataSource, "list_shards", lambda self, split: [])
  with tfds.testing.mock_data(num_examples=12):
    data = infer.load_task(name, split, vocabulary="gettext", max_input_length=100000,
                           num_examples=3)
  demo = vocab.load_vocabulary("gettext")
  assert len(data) == 3
  first_shots = None
  for text, ids in zip(data.inputs, data.input_ids):
    assert ids == demo.encode(text)
    assert text.startswith(fmt.instruction or marker)
    assert text.count(marker) == shots + 1
    assert text.endswith(fmt.targets_prefix.rstrip())
    head = text.rsplit(fmt.separator, 1)[0]           # everything but the query
    assert first_shots in (None, head)                # the same shots for every input
    first_shots = head
  post = seqio.get_mixture_or_task(name).postprocess_fn
  assert post == data.postprocess
  if name == "gsm8k_8shot":
    assert post("Tom has 3. 3 * 2 = 6\n#### 6\n\nQuestion: x", is_target=False) == "6"
  else:
    assert post(" Datei öffnen\n\nEnglish: x", is_target=False) == "Datei öffnen"


@pytest.mark.slow
def test_load_task_registers_the_projects_tasks_through_the_hook(seqio_and_tasks,
                                                                  monkeypatch):
  """evaluation never imports tasks (docs/design.md §5): importing tasks hooks
  its register_tasks into infer, which calls the hooks for a name seqio does
  not know, then says how to register one that is still missing."""
  seqio, tasks = seqio_and_tasks
  from spec_cascade_jax.evaluation import infer  # pylint: disable=g-import-not-at-top
  assert tasks.register_tasks in infer.SEQIO_TASK_REGISTRARS
  calls = []
  monkeypatch.setattr(infer, "SEQIO_TASK_REGISTRARS", [calls.append])
  with pytest.raises(ValueError, match=r"unknown task 'no_such_task'\. Known tasks: "
                                       r"gettext_en_de \(bundled\).*seqio.*register_tasks"):
    infer.load_task("no_such_task", t5_vocab_path="/v.model")
  assert calls == ["/v.model"]
  assert "no_such_task" not in seqio.TaskRegistry.names()


@pytest.mark.slow
@pytest.mark.parametrize("shots", [0, 2])
def test_fewshot_format_renders_as_seqio_does(seqio_and_tasks, shots):
  """One prompt format: FewShotFormat.render (the offline gettext prompts) is
  the text seqio's fewshot_preprocessor builds (the seqio tasks)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from spec_cascade_jax.evaluation import prompts  # pylint: disable=g-import-not-at-top
  train = [("Open file", "Datei öffnen"), ("Quit", "Beenden")][:shots]
  example = {"eval": {"inputs": tf.constant("Save as"), "targets": tf.constant("Speichern")}}
  if shots:
    example["train"] = {"inputs": tf.constant([x for x, _ in train]),
                        "targets": tf.constant([y for _, y in train])}
  ds = tf.data.Dataset.from_tensors(example)
  for fmt in (prompts.TRANSLATE_EN_DE, prompts.GSM8K):
    out = next(fmt.seqio_preprocessor()(ds).as_numpy_iterator())
    assert out["inputs"].decode() == fmt.render(train, "Save as")
    assert out["targets"].decode() == "Speichern"
