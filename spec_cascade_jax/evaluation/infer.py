"""infer and eval jobs: decode a task split with any method, score it.

    python -m spec_cascade_jax.main --gin_file=configs/runs/infer.gin \
        --gin_file=configs/models/demo_pair.gin --gin.TASK="'gettext_en_de'" \
        --gin.OUTPUT_DIR="'runs/infer'"

Tasks: the bundled corpus `gettext_en_de` (`data.dataset.CORPORA`) is read
with `data.dataset.load_split` and the vocabulary given (its own:
`dataset.CORPUS_VOCABULARIES`; no seqio or
TensorFlow needed: the GPU machine has neither);
`gettext_en_de_<k>shot` is the same split as k-shot prompts for decoder-only
LMs (evaluation/prompts.py; the vocabulary is then the LM's Hugging Face
directory, whose tokenizer.json is read); any other name is a seqio task (registered by `spec_cascade_jax.tasks`, which
hooks itself into SEQIO_TASK_REGISTRARS when imported, or by the user), read
with `task.get_dataset` and scored with the task's own metric functions. The
building blocks (`load_task`, `decode_batched`, `cost_stats`) are shared with
the sweep. With a decoder-only verifier (`protocol.is_decoder_only`) decoding
passes each row's prompt length (`generate(input_lengths=)`) and cuts outputs
at the models' own EOS ids; nothing else changes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from spec_cascade_jax.decoding.padding import pad_batch
from spec_cascade_jax.decoding import methods
from spec_cascade_jax.decoding.errors import UsageError
from spec_cascade_jax.evaluation import grids, latency, prompts
from spec_cascade_jax.models.protocol import is_decoder_only

GETTEXT_TASK = "gettext_en_de"
DEFAULT_BUCKETS = (32, 64, 128)
# Functions register(t5_vocab_path) that add tasks to seqio's registry; a seqio
# task name that seqio does not know is looked up again after calling them.
# spec_cascade_jax.tasks adds its `register_tasks` here when it is imported
# (main.py imports it): the project's tasks are registered on first use while
# this library package never imports the entry-point layer (docs/design.md §5).
SEQIO_TASK_REGISTRARS: list[Callable[[str | None], Any]] = []


@dataclasses.dataclass
class TaskData:
  """A split ready to decode.

  input_ids: one list of ids per example, EOS appended, truncated.
  inputs / targets: the texts (targets are what the metrics compare with).
  decode: ids -> text (up to EOS).
  metric_fns: seqio-style fn(targets, predictions) -> {name: float}.
  """
  name: str
  split: str
  input_ids: list[list[int]]
  inputs: list[str]
  targets: list[str]
  decode: Callable[[Sequence[int]], str]
  metric_fns: list[Callable[..., dict]]
  postprocess: Callable[[str], Any] | None = None

  def __len__(self) -> int:
    return len(self.input_ids)

  def subset(self, indices: Sequence[int]) -> "TaskData":
    idx = [int(i) for i in indices]
    return dataclasses.replace(self, input_ids=[self.input_ids[i] for i in idx],
                               inputs=[self.inputs[i] for i in idx],
                               targets=[self.targets[i] for i in idx])


def spread_indices(n: int, k: int | None) -> np.ndarray:
  """k indices spread evenly over range(n) (all of them if k is None or >= n).

  The shipped splits are sorted by English text: a prefix would be biased.
  """
  if k is None or k >= n:
    return np.arange(n)
  if k <= 0:
    raise ValueError(f"number of examples must be positive; got {k}")
  return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def load_task(task: str = GETTEXT_TASK, split: str = "validation",
              vocabulary: str = "gettext", max_input_length: int = 128,
              num_examples: int | None = None,
              t5_vocab_path: str | None = None, models: Sequence = ()) -> TaskData:
  """Reads `split` of `task` (see the module docstring); `num_examples` spread evenly.

  `models`: the models that will decode it (drafter, verifier): a vocabulary
  other than the one they record raises `data.vocab.VocabularyMismatchError`
  here, before any decoding."""
  if max_input_length < 2:
    raise ValueError(f"max_input_length must be >= 2 (one token and EOS); got "
                     f"{max_input_length}")
  if prompts.num_shots(task) is not None:
    return _load_prompted_task(task, split, vocabulary, max_input_length, num_examples,
                               models)
  from spec_cascade_jax.data import dataset
  if task in dataset.CORPORA:
    from spec_cascade_jax.data.vocab import load_vocabulary
    from spec_cascade_jax.evaluation import metrics
    vocab = load_vocabulary(vocabulary, models=models)
    rows = dataset.load_split(split, task)
    rows = [rows[i] for i in spread_indices(len(rows), num_examples)]
    ids = [vocab.encode(r["en"])[:max_input_length - 1] + [vocab.eos_id] for r in rows]
    return TaskData(task, split, ids, [r["en"] for r in rows], [r["de"] for r in rows],
                    vocab.decode, [metrics.bleu, metrics.chrf])
  return _load_seqio_task(task, split, vocabulary, max_input_length, num_examples,
                          t5_vocab_path, models)


def _encode_prompts(vocab, texts: Sequence[str], max_input_length: int) -> list[list[int]]:
  """Prompt ids with the special tokens the tokenizer adds (BOS). A prompt
  longer than max_input_length keeps its first token (BOS where there is one)
  and its last max_input_length - 1 tokens: the instruction's start and the
  query survive, the earliest shots are cut."""
  encode = getattr(vocab, "encode_prompt", vocab.encode)
  out = []
  for text in texts:
    x = encode(text)
    out.append(x if len(x) <= max_input_length else x[:1] + x[1 - max_input_length:])
  return out


def _load_prompted_task(task, split, vocabulary, max_input_length, num_examples, models=()):
  """gettext_en_de as k-shot prompts (evaluation/prompts.py)."""
  from spec_cascade_jax.data.dataset import load_split
  from spec_cascade_jax.data.vocab import load_vocabulary
  from spec_cascade_jax.evaluation import metrics
  vocab = load_vocabulary(vocabulary, models=models)
  shots = prompts.pick_shots(load_split("train"), prompts.num_shots(task))
  rows = load_split(split)
  rows = [rows[i] for i in spread_indices(len(rows), num_examples)]
  ids = _encode_prompts(vocab, [prompts.prompt(shots, r["en"]) for r in rows],
                        max_input_length)
  return TaskData(task, split, ids, [r["en"] for r in rows], [r["de"] for r in rows],
                  vocab.decode, [metrics.bleu, metrics.chrf],
                  postprocess=prompts.answer_line)


def check_task(task: str, t5_vocab_path: str | None = None) -> None:
  """Raises UsageError, listing the known tasks, unless `load_task` can read
  `task`: a bundled corpus, its k-shot prompts, or a seqio task (registered
  through SEQIO_TASK_REGISTRARS where seqio does not know it yet). Reads no data."""
  from spec_cascade_jax.data import dataset
  if prompts.num_shots(task) is None and task not in dataset.CORPORA:
    _seqio_with_task(task, t5_vocab_path)


def _seqio_with_task(task: str, t5_vocab_path: str | None):
  """The seqio module, `task` registered in it; UsageError if it is unknown."""
  from spec_cascade_jax.data import dataset
  unknown = (f"unknown task {task!r}. Known tasks: {', '.join(sorted(dataset.CORPORA))} "
             f"(bundled), their k-shot prompts for decoder-only LMs ({GETTEXT_TASK}_<k>shot, "
             f"e.g. {GETTEXT_TASK}_5shot)")
  try:
    import seqio  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UsageError(f"{unknown}, and seqio tasks, which need seqio (not installed: pip "
                     "install seqio tensorflow-datasets rouge-score, the project's [seqio] "
                     "extra).") from e
  if task not in seqio.TaskRegistry.names():
    for register in SEQIO_TASK_REGISTRARS:
      register(t5_vocab_path)
  names = sorted(seqio.TaskRegistry.names())
  if task not in names:
    listed = (f"the seqio tasks {', '.join(names[:40])}{', ...' if len(names) > 40 else ''}"
              if names else "no seqio task yet")
    raise UsageError(f"{unknown}, and {listed}. Register another seqio task before running "
                     "(spec_cascade_jax.tasks.register_tasks() registers the project's).")
  return seqio


def check_job(task: str, point: grids.Point, max_new_tokens: int,
              t5_vocab_path: str | None = None) -> None:
  """Raises UsageError for decoding settings `generate` would reject (method,
  rule, α, γ, temperature, ...) or an unknown task: a job calls it before it
  loads any model or data."""
  import jax
  from spec_cascade_jax.decoding import api
  api.check_settings(rng=jax.random.PRNGKey(point.seed),
                     **decode_kwargs(point, max_new_tokens))
  check_task(task, t5_vocab_path)


def _load_seqio_task(task, split, vocabulary, max_input_length, num_examples,
                     t5_vocab_path, models=()):
  seqio = _seqio_with_task(task, t5_vocab_path)
  t = seqio.get_mixture_or_task(task)
  ds = t.get_dataset(sequence_length=None, split=split, shuffle=False)
  rows = list(ds.as_numpy_iterator())
  rows = [rows[i] for i in spread_indices(len(rows), num_examples)]
  vocab = t.output_features["targets"].vocabulary

  def text(x):
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)

  metric_fns = list(getattr(t, "predict_metric_fns", None) or t.metric_fns)
  if rows and isinstance(rows[0]["inputs"], (bytes, str)):
    # A text task (the few-shot prompts for LMs): the prompts are tokenized
    # with `vocabulary`, the LM's own tokenizer.
    from spec_cascade_jax.data.vocab import load_vocabulary
    lm_vocab = load_vocabulary(vocabulary, models=models)
    ids = _encode_prompts(lm_vocab, [text(r["inputs"]) for r in rows], max_input_length)
    return TaskData(task, split, ids, [text(r["inputs"]) for r in rows],
                    [text(r["targets"]) for r in rows], lm_vocab.decode, metric_fns,
                    postprocess=t.postprocess_fn)
  ids = []
  for r in rows:
    x = [int(i) for i in r["inputs"]]
    if len(x) > max_input_length:  # keep EOS at the end after truncation
      x = x[:max_input_length - 1] + [1]
    ids.append(x)

  def decode(token_ids):
    token_ids = [int(i) for i in token_ids]
    if 1 in token_ids:
      token_ids = token_ids[:token_ids.index(1)]
    return vocab.decode(token_ids)

  return TaskData(task, split, ids, [text(r["inputs_pretokenized"]) for r in rows],
                  [text(r["targets_pretokenized"]) for r in rows], decode, metric_fns,
                  postprocess=t.postprocess_fn)


def bucket_length(n: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= n (inputs are truncated to the largest)."""
  for b in sorted(buckets):
    if n <= b:
      return int(b)
  raise ValueError(f"input of {n} tokens exceeds the largest length bucket {max(buckets)}; "
                   "add a larger bucket or lower max_input_length")


def decode_kwargs(point: grids.Point, max_new_tokens: int) -> dict:
  """`generate` keyword arguments of a sweep point.

  rule and alpha go only to the methods that take them (`generate` rejects
  them elsewhere): a point's rule "" means the method's default rule.
  """
  from spec_cascade_jax.decoding import api
  kw = dict(method=point.method, num_draft_tokens=point.num_draft_tokens,
            temperature=point.temperature, max_new_tokens=max_new_tokens)
  if api.method_takes_rule(point.method):
    kw["rule"] = point.rule or None
  if api.method_takes_alpha(point.method):
    kw["alpha"] = point.alpha
  if point.draft_policy:
    kw["draft_policy"] = point.draft_policy
  if point.draft_policy in grids.THRESHOLD_POLICIES:
    kw["draft_threshold"] = point.draft_threshold
  return kw


def paired_kwargs(point: grids.Point, max_new_tokens: int) -> tuple[dict, dict]:
  """`generate` keyword arguments of both sides of `point`'s paired timing:
  the point's, and verifier-only decoding's at its temperature."""
  ver = grids.Point("Verifier", "verifier", temperature=point.temperature, seed=point.seed)
  return decode_kwargs(point, max_new_tokens), decode_kwargs(ver, max_new_tokens)


def cut_at_eos(row: list[int], eos: Sequence[int]) -> list[int]:
  """`row` up to and including its first EOS."""
  for j, t in enumerate(row):
    if t in eos:
      return row[:j + 1]
  return row


def prompt_kwargs(verifier, rows: Sequence[Sequence[int]], ids: np.ndarray) -> dict:
  """`generate`'s input_lengths for a decoder-only verifier: each row's prompt
  length (filler rows past `rows`, a lone token, count 1); {} otherwise (T5
  finds its padding from the 0s)."""
  if not is_decoder_only(verifier):
    return {}
  lengths = np.ones((ids.shape[0],), np.int32)
  lengths[:len(rows)] = [len(r) for r in rows]
  return {"input_lengths": lengths}


def decode_batched(drafter, verifier, input_ids: Sequence[Sequence[int]],
                   point: grids.Point, batch_size: int = 64, max_new_tokens: int = 64,
                   buckets: Sequence[int] = DEFAULT_BUCKETS, progress: bool = False
                   ) -> tuple[list[list[int]], dict[str, np.ndarray]]:
  """Decodes every example; returns (token lists, stats {name: [N] int}).

  Examples are grouped by length bucket and every batch is padded to
  `batch_size` rows, so a method compiles once per bucket. At temperature > 0
  batch b uses PRNG fold_in(PRNGKey(seed), b).
  """
  import jax
  from spec_cascade_jax.decoding import api
  from spec_cascade_jax.decoding.api import generate
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1; got {batch_size}")
  n = len(input_ids)
  lengths = [bucket_length(len(x), buckets) for x in input_ids]
  order = sorted(range(n), key=lambda i: (lengths[i], len(input_ids[i])))
  batches = []
  for b in sorted(set(lengths)):
    idx = [i for i in order if lengths[i] == b]
    batches += [(b, idx[s:s + batch_size]) for s in range(0, len(idx), batch_size)]
  tokens: list[list[int]] = [[] for _ in range(n)]
  stats: dict[str, np.ndarray] = {}
  base = jax.random.PRNGKey(point.seed)
  eos = api.model_eos_ids(verifier, "verifier")
  it = batches
  if progress:
    from tqdm.auto import tqdm
    it = tqdm(batches, desc=point.label, leave=False)
  for bi, (length, idx) in enumerate(it):
    # A short last batch is filled with lone-EOS rows: one shape per bucket.
    rows = [input_ids[i] for i in idx]
    ids = pad_batch(rows, length, rows=batch_size)
    res = generate(drafter, verifier, ids, rng=jax.random.fold_in(base, bi),
                   **decode_kwargs(point, max_new_tokens), **prompt_kwargs(verifier, rows, ids))
    for r, i in enumerate(idx):
      tokens[i] = cut_at_eos([int(t) for t in res.tokens[r]], eos)
    for k, v in res.stats.items():
      stats.setdefault(k, np.zeros(n, np.int64))[idx] = v[:len(idx)]
  return tokens, stats


def cost_stats(stats: dict[str, np.ndarray], method: str) -> dict[str, float | None]:
  """Totals and the derived rates the tables report.

  rejection_rate = 1 - accepted / draft_tokens (speculative methods only);
  deferral_rate  = deferred tokens / tokens, or deferred examples / examples
                   for seq_cascade (it defers whole sequences); None for the
                   methods without a deferral rule: the verifier and lossless
                   SD always take the verifier's distribution, lossy SD,
                   prompt lookup and the drafter never defer (targets.py);
  verifier_calls_per_token = verifier calls / generated tokens (`rounds`
                   counts both parallel rounds and sequential calls);
  drafter_steps_per_token  = one-token drafter calls / generated tokens.
  The per-token counts do not depend on the machine: they explain its
  wall-clock ratios.
  """
  from spec_cascade_jax.decoding import api
  tot = {k: int(np.sum(v)) for k, v in stats.items()}
  n = int(len(next(iter(stats.values())))) if stats else 0
  out: dict[str, float | None] = {f"total_{k}": v for k, v in tot.items()}
  tokens = max(tot.get("num_tokens", 0), 1)
  out["num_examples"] = n
  out["mean_tokens"] = tot.get("num_tokens", 0) / max(n, 1)
  if method in grids.SPECULATIVE_METHODS and tot.get("draft_tokens", 0) > 0:
    out["rejection_rate"] = 1.0 - tot["accepted"] / tot["draft_tokens"]
  else:
    out["rejection_rate"] = None
  if not api.method_takes_alpha(method) or method == "lossy":
    out["deferral_rate"] = None
  elif method == "seq_cascade":
    out["deferral_rate"] = tot.get("deferrals", 0) / max(n, 1)
  else:
    out["deferral_rate"] = tot.get("deferrals", 0) / tokens
  out["verifier_calls_per_token"] = tot.get("rounds", 0) / tokens
  out["drafter_steps_per_token"] = tot.get("drafter_steps", 0) / tokens
  return out


def score(data: TaskData, predictions: Sequence[str]) -> dict[str, float]:
  """The task's metric functions on (targets, predictions), seqio style."""
  targets = list(data.targets)
  preds = list(predictions)
  if data.postprocess is not None:
    targets = [data.postprocess(t, example={}, is_target=True) for t in targets]
    preds = [data.postprocess(p, example={}, is_target=False) for p in preds]
  out: dict[str, float] = {}
  for fn in data.metric_fns:
    out.update({k: float(v) for k, v in fn(targets, preds).items()})
  return out


def resolve_model(model_or_name):
  """A model object as is; a string through `load_model` (bundled name or path)."""
  if isinstance(model_or_name, (str, os.PathLike)):
    from spec_cascade_jax.models.loading import load_model
    return load_model(os.fspath(model_or_name))
  return model_or_name


def load_checked_model(path_or_name: str, preset: str | None = None,
                       dtype: str | None = None, pad_vocab_to: int | None = None):
  """`load_model`, then checks the architecture against a size preset.

  Used by configs/models/*.gin so that a T5-base checkpoint passed where a
  T5-small is expected (or a Gemma 2 9B where the 2B is) fails here, not as a
  silently odd latency curve. `preset`: a T5 preset (models/t5/config.py) or a
  decoder-only one (models/lm/config.py); None checks nothing (configs/models/
  pair.gin). `pad_vocab_to`: widen the model's output vocabulary to this size
  (`models.padded.pad_vocabulary`: the added ids get probability 0), for two
  checkpoints of one tokenizer whose embeddings differ by padding rows.
  """
  from spec_cascade_jax.models.loading import load_model
  from spec_cascade_jax.models.padded import pad_vocabulary
  model = _checked(load_model(path_or_name, dtype=dtype), path_or_name, preset)
  return model if pad_vocab_to is None else pad_vocabulary(model, int(pad_vocab_to))


def _checked(model, path_or_name: str, preset: str | None):
  """`model`, after its architecture is checked against `preset` (if any)."""
  from spec_cascade_jax.models import lm, t5
  if not preset:
    return model
  if preset not in lm.PRESETS and preset not in t5.PRESETS:
    raise ValueError(f"unknown preset {preset!r}: use a T5 preset {sorted(t5.PRESETS)} "
                     f"or a decoder-only one {sorted(lm.PRESETS)}.")
  if preset in lm.PRESETS:
    want = lm.PRESETS[preset]
    fields = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_layers",
              "num_heads", "num_kv_heads", "head_dim")
  else:
    want = t5.get_config(preset)
    fields = ("d_model", "d_kv", "d_ff", "num_heads", "num_layers", "feed_forward_proj")
  got = model.config
  diff = {f: (getattr(got, f, None), getattr(want, f)) for f in fields
          if getattr(got, f, None) != getattr(want, f)}
  if diff:
    raise ValueError(f"{path_or_name!r} is not a {preset} checkpoint: (found, expected) "
                     f"{diff}. Bind the checkpoint of the right size, or use the model "
                     "file of its size (configs/models/).")
  return model


def _write_jsonl(path: str, rows: Sequence[dict]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


def infer(drafter, verifier, output_dir: str, task: str = GETTEXT_TASK,
          split: str = "validation", method: str = methods.DEFAULT_METHOD,
          rule: str | None = None, alpha: float = methods.DEFAULT_ALPHA,
          num_draft_tokens: int = methods.DEFAULT_NUM_DRAFT_TOKENS, temperature: float = 0.0,
          seed: int = 0, num_examples: int | None = None, batch_size: int = 64,
          max_new_tokens: int = 64, max_input_length: int = 128,
          buckets: Sequence[int] = DEFAULT_BUCKETS, vocabulary: str = "gettext",
          t5_vocab_path: str | None = None, draft_policy: str | None = None,
          draft_threshold: float | None = None) -> str:
  """Decodes a task split and writes `output_dir/predictions.jsonl`.

  One line per example: index, input, target, prediction, stats (per-row
  kernel counters: rounds, drafter_steps, draft_tokens, accepted, deferrals,
  sequential_verifier_calls, num_tokens). Returns the file's path. A mistake
  in the task or the decoding settings raises UsageError before any work.
  draft_policy / draft_threshold: `generate`'s (decoding/drafting.py).
  """
  point = job_point("infer", method, rule, alpha, num_draft_tokens, temperature, seed,
                    draft_policy, draft_threshold)
  drafter, verifier, data = _start_job(drafter, verifier, task, split, point, vocabulary,
                                       max_input_length, max_new_tokens, num_examples,
                                       t5_vocab_path)
  rows, _, _ = _infer_rows(drafter, verifier, data, point, batch_size, max_new_tokens,
                           buckets)
  path = os.path.join(output_dir, "predictions.jsonl")
  _write_jsonl(path, rows)
  print(f"wrote {len(rows)} predictions to {path}")
  return path


def job_point(name, method, rule, alpha, num_draft_tokens, temperature, seed,
              draft_policy=None, draft_threshold=None) -> grids.Point:
  """The grids.Point of an infer or eval job. A draft setting `generate` would
  reject (an unknown policy, a threshold without a threshold policy, a
  policy for a method that drafts nothing) raises UsageError here."""
  from spec_cascade_jax.decoding import api
  if draft_policy is not None or draft_threshold is not None:
    api.check_settings(method=method, draft_policy=draft_policy,
                       draft_threshold=draft_threshold)
  policy = "" if draft_policy in (None, methods.DEFAULT_DRAFT_POLICY) else draft_policy
  if policy in grids.THRESHOLD_POLICIES and draft_threshold is None:
    draft_threshold = methods.DEFAULT_DRAFT_THRESHOLD
  return grids.Point(name, method, rule or "", float(alpha), num_draft_tokens,
                     float(temperature), int(seed), draft_policy=policy,
                     draft_threshold=float(draft_threshold or 0.0))


def _start_job(drafter, verifier, task, split, point, vocabulary, max_input_length,
               max_new_tokens, num_examples, t5_vocab_path):
  """(drafter, verifier, data) of an infer or eval job: its settings and task
  checked before any work, then the models, then the task (its vocabulary
  checked against the models)."""
  check_job(task, point, max_new_tokens, t5_vocab_path)
  drafter, verifier = resolve_model(drafter), resolve_model(verifier)
  data = load_task(task, split, vocabulary, max_input_length, num_examples, t5_vocab_path,
                   models=(drafter, verifier))
  return drafter, verifier, data


def _infer_rows(drafter, verifier, data, point, batch_size, max_new_tokens, buckets):
  tokens, stats = decode_batched(drafter, verifier, data.input_ids, point, batch_size,
                                 max_new_tokens, buckets, progress=True)
  preds = [data.decode(t) for t in tokens]
  rows = [{"index": i, "input": data.inputs[i], "target": data.targets[i],
           "prediction": preds[i], "stats": {k: int(v[i]) for k, v in stats.items()}}
          for i in range(len(data))]
  return rows, preds, stats


def evaluate(drafter, verifier, output_dir: str, task: str = GETTEXT_TASK,
             split: str = "validation", method: str = methods.DEFAULT_METHOD,
             rule: str | None = None, alpha: float = methods.DEFAULT_ALPHA,
             num_draft_tokens: int = methods.DEFAULT_NUM_DRAFT_TOKENS,
             temperature: float = 0.0, seed: int = 0, num_examples: int | None = None,
             batch_size: int = 64, max_new_tokens: int = 64, max_input_length: int = 128,
             buckets: Sequence[int] = DEFAULT_BUCKETS, vocabulary: str = "gettext",
             t5_vocab_path: str | None = None, num_latency_examples: int = 0,
             repeats: int = 3, draft_policy: str | None = None,
             draft_threshold: float | None = None) -> dict:
  """infer, then the task's metrics next to the cost statistics.

  Writes predictions.jsonl and metrics.json in `output_dir`. With
  num_latency_examples > 0 it also times that many examples at batch 1, paired
  with verifier-only decoding (`time_point`), and reports the relative
  latency with its bootstrap interval. A mistake in the task or the decoding
  settings raises UsageError before any work.
  """
  point = job_point("eval", method, rule, alpha, num_draft_tokens, temperature, seed,
                    draft_policy, draft_threshold)
  q_model, p_model, data = _start_job(drafter, verifier, task, split, point, vocabulary,
                                      max_input_length, max_new_tokens, num_examples,
                                      t5_vocab_path)
  t0 = time.perf_counter()
  rows, preds, stats = _infer_rows(q_model, p_model, data, point, batch_size,
                                   max_new_tokens, buckets)
  result: dict[str, Any] = {"task": task, "split": split, "setting": dataclasses.asdict(point),
                            "num_examples": len(data), "metrics": score(data, preds),
                            "cost": cost_stats(stats, method),
                            "decode_seconds": time.perf_counter() - t0}
  if num_latency_examples > 0:
    sub = data.subset(spread_indices(len(data), num_latency_examples))
    timed = time_point(q_model, p_model, sub.input_ids, point, max_new_tokens, buckets,
                       repeats)
    result["latency"] = {"num_examples": len(sub), "repeats": repeats, **timed.summary()}
  os.makedirs(output_dir, exist_ok=True)
  _write_jsonl(os.path.join(output_dir, "predictions.jsonl"), rows)
  with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  print(json.dumps({"metrics": result["metrics"], "cost": result["cost"],
                    **({"latency": result["latency"]} if "latency" in result else {})},
                   indent=1))
  return result


def time_point(drafter, verifier, input_ids: Sequence[Sequence[int]], point: grids.Point,
               max_new_tokens: int, buckets: Sequence[int], repeats: int,
               stats_out: dict | None = None, step_programs: Mapping | None = None,
               loop_programs: tuple | None = None):
  """Batch-1 timings of `point` paired with verifier-only decoding (docs/design.md §6.1).

  Each example is padded to its length bucket; evaluation/latency.py warms up
  each shape untimed, interleaves (point, verifier) `repeats` times per
  example and keeps the medians. The verifier runs at the point's temperature
  and seed. Returns latency.PairedTimes.
  stats_out: a dict to receive the stats of the timed decodes, {"method":
  {name: [N]}, "verifier": {name: [N]}}, one entry per example (the last
  decode of each; the cost model prices these counts, evaluation/cost_model.py).
  step_programs: {length bucket: (fns, costs)}, evaluation/step_costs.py's
  `programs` for each bucket of `input_ids`: each example's bucket's programs
  are timed once after its pairs (latency.Interleaved's probes), and
  stats_out["step_costs"] receives {bucket: StepCosts} from the median of
  each program's timings: step costs measured in the same minutes, under the
  same load, as the decodes they price.
  loop_programs: (fns, costs), evaluation/loop_costs.py's `programs` for the
  point's two sides, timed likewise after every example's pairs;
  stats_out["loop_costs"] receives {side: LoopCost} from their medians.
  The same, one example at a time: `PointTimer` (the sweep's round-robin).
  """
  timer = PointTimer(drafter, verifier, input_ids, point, max_new_tokens, buckets, repeats,
                     step_programs, loop_programs)
  with latency.gc_paused():
    entries = [timer.time_example(i) for i in range(len(input_ids))]
  return timer.finish(entries, stats_out)


class PointTimer:
  """`time_point` one example at a time: `time_example(i)` times example i's
  pairs and probes and returns them as a JSON-ready entry; `finish(entries)`
  turns every example's entry (from this process or, saved, from an
  interrupted one) into what `time_point` returns. The sweep interleaves many
  points this way, example by example (evaluation/sweep.py)."""

  def __init__(self, drafter, verifier, input_ids: Sequence[Sequence[int]],
               point: grids.Point, max_new_tokens: int, buckets: Sequence[int], repeats: int,
               step_programs: Mapping | None = None, loop_programs: tuple | None = None):
    import jax
    from spec_cascade_jax.decoding.api import generate
    rng = jax.random.PRNGKey(point.seed)
    kwargs, ver = paired_kwargs(point, max_new_tokens)
    padded = [pad_batch([x], bucket_length(len(x), buckets)) for x in input_ids]
    self.inputs = [(ids, prompt_kwargs(verifier, [x], ids), i)
                   for i, (x, ids) in enumerate(zip(input_ids, padded))]
    self.lengths = [ids.shape[1] for ids in padded]
    self.step_programs, self.loop_programs = step_programs, loop_programs
    self._stats: dict[str, dict] = {}

    def decoder(side, models, kw):
      def run(x):
        res = generate(*models, x[0], rng=rng, **kw, **x[1])
        self._stats[side] = res.stats
        return res
      return run

    if step_programs is not None:
      missing = sorted(set(self.lengths) - set(step_programs))
      if missing:
        raise ValueError(f"no step-cost programs for the input length buckets {missing}; "
                         f"got {sorted(step_programs)}.")
    self._pairs = latency.Interleaved(
        decoder("method", (drafter, verifier), kwargs),
        None if point.method == "verifier" else decoder("verifier", (None, verifier), ver),
        repeats, compile_key=lambda x: x[0].shape)

  def __len__(self) -> int:
    return len(self.inputs)

  def time_example(self, i: int) -> dict:
    """{"method_s", "verifier_s": median seconds, "probes": [[group, key, seconds]]
    (group: the length bucket of a step-cost program, or "loop"), "stats": {side:
    {name: int}} of the last decodes, "seconds": wall time}."""
    t0 = time.perf_counter()
    probes: dict = {}
    if self.step_programs is not None:
      n = self.lengths[i]
      probes.update({(n, key): fn for key, fn in self.step_programs[n][0].items()})
    if self.loop_programs is not None:
      probes.update({("loop", key): fn for key, fn in self.loop_programs[0].items()})
    self._stats.clear()
    m, v, probe_s = self._pairs.time(self.inputs[i], probes)
    stats = {side: {k: int(np.asarray(x)[0]) for k, x in st.items()}
             for side, st in self._stats.items()}
    stats.setdefault("verifier", stats["method"])   # the verifier point
    return {"method_s": m, "verifier_s": v,
            "probes": [[group, _json_key(key), s] for (group, key), s in probe_s.items()],
            "stats": stats, "seconds": time.perf_counter() - t0}

  def finish(self, entries: Sequence[Mapping], stats_out: dict | None = None):
    """latency.PairedTimes from one entry per example, in order; stats_out as
    `time_point` fills it."""
    if len(entries) != len(self.inputs):
      raise ValueError(f"one timing entry per example: got {len(entries)} for "
                       f"{len(self.inputs)}.")
    timed = latency.collect([
        (e["method_s"], e["verifier_s"],
         {(group, _from_json_key(key)): s for group, key, s in e["probes"]})
        for e in entries])
    if stats_out is None:
      return timed

    def medians(group):
      return {key: float(np.median(t)) for (g, key), t in timed.probe_s.items() if g == group}

    if self.loop_programs is not None:
      stats_out["loop_costs"] = self.loop_programs[1](medians("loop"))
    if self.step_programs is not None:
      stats_out["step_costs"] = {n: self.step_programs[n][1](medians(n))
                                 for n in dict.fromkeys(self.lengths)}
    for side in ("method", "verifier"):
      stats_out[side] = {k: np.array([e["stats"][side][k] for e in entries])
                         for k in entries[0]["stats"][side]}
    return timed


def _json_key(key):
  """A probe key (strings, ints, tuples of them) as JSON keeps it (lists)."""
  return [_json_key(k) for k in key] if isinstance(key, tuple) else key


def _from_json_key(key):
  return tuple(_from_json_key(k) for k in key) if isinstance(key, list) else key
