"""Calibrated α: the cheapest deferral threshold with a finite-sample quality guarantee.

    res = scj.calibrate(drafter, verifier, prompts, method="spec_cascade",
                        rule="token_v3", epsilon=0.05, delta=0.1)
    res.alpha           # the certified α with the fewest verifier calls per token
    print(res.guarantee)

A user states the quality they need, "the loss against the verifier is at most
ε with probability at least 1 − δ", and gets the α that keeps it at the least
cost, from Learn then Test over an α grid ordered cautious → bold (risk.py;
docs/design.md §6.6 derives the p-values and the fixed-sequence procedure).

What is decoded: the verifier's own output once per input (method "verifier";
greedy at temperature 0), then every (α, input) pair of the grid as one row
of a batch: α is a traced per-row array in `generate`, so the whole grid is
batches of one shape, one compilation. With `cache_path` the decoded rows are
saved to JSON after every batch, and a rerun with the same pair, inputs and
lengths decodes only what is missing (an interrupted calibration resumes;
another ε, δ, loss, cost target, method or rule reuses every row it shares).

Losses (per example; their mean over examples is the risk R(α) that is controlled):
  "token"        share of output positions whose token differs from the
                 verifier's output: outputs y and v cut after their EOS, the
                 loss is #{t < max(|y|, |v|) : y_t ≠ v_t} / max(|y|, |v|), a
                 position past the end of the shorter output counting as a
                 difference. In [0, 1]; needs no references. ε is a share.
  "chrf", "bleu" the drop in sentence chrF / BLEU (sacrebleu, 0-100,
                 metrics.sentence_scores) against the reference:
                 max(0, metric(v, ref) − metric(y, ref)). ε is in points;
                 bounded by 100, so the test runs on loss / 100.
  "exact_match"  1 where the verifier's output matches the reference and the
                 method's does not (stripped strings, after `postprocess`).
  a callable     fn(output_ids, verifier_ids, reference) -> float in [0, 1]
                 (ids cut after EOS; reference None without references).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import types
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from spec_cascade_jax.decoding import methods
from spec_cascade_jax.decoding.errors import UsageError
from spec_cascade_jax.evaluation import grids, risk

LOSSES = ("token", "chrf", "bleu", "exact_match")
# The largest value of each loss, in the units of its ε (the test runs on loss / bound).
LOSS_BOUNDS = {"token": 1.0, "chrf": 100.0, "bleu": 100.0, "exact_match": 1.0}
_LOSS_WORDS = {
    "token": "share of output tokens that differ from the verifier's output",
    "chrf": "drop in sentence chrF against the verifier's output (points)",
    "bleu": "drop in sentence BLEU against the verifier's output (points)",
    "exact_match": "share of examples the verifier gets right and the method gets wrong",
}

# Whether a larger α is bolder (defers less, keeps more of the drafter), per
# α-range key (methods.ALPHA_RANGES: the rule for the rule methods, else the
# method), read off each definition in decoding/targets.py and baselines.py:
#   chow         defer iff max q° < 1 − α: the threshold falls as α grows;
#   diff         defer iff max q° < max p° − α: same;
#   opt          defer iff max q° < max p° − α·TV(p, q), TV ≥ 0: same;
#   token_v1     keep set A = {v : q°(v) ≥ max p° − α} grows with α;
#   token_v2     A = {v : p°(v) ≥ max p° − α} grows with α;
#   token_v3     A = {v : p°(v) ≥ (1 − α)·max p°} grows with α;
#   lossy        accept with min(1, p(x) / ((1 − α)·q(x))), rising with α;
#   bild         defer iff −log p°(argmax q°) > α: fewer deferrals as α grows;
#   seq_cascade  rerun on p iff the confidence < 1 − α: fewer as α grows.
# Every rule of this library turns out bold-with-larger-α; the grid is still
# ordered through this table, which tests/test_calibration.py checks against
# the targets themselves, so a rule added the other way round is caught.
BOLDER_WITH_LARGER_ALPHA: dict[str, bool] = {
    "chow": True, "diff": True, "opt": True,
    "token_v1": True, "token_v2": True, "token_v3": True,
    "lossy": True, "bild": True, "seq_cascade": True,
}


def alpha_key(method: str, rule: str | None) -> str:
  """The ALPHA_RANGES key of (method, rule): the rule for the rule methods."""
  spec = methods.get(method)
  if not spec.takes_alpha:
    raise UsageError(f"method={method!r} has no α to calibrate; use one of "
                     f"{', '.join(repr(m) for m in methods.taking('alpha'))}.")
  return (rule or spec.default_rule) if spec.takes_rule else method


def default_alphas(method: str, rule: str | None) -> tuple[float, ...]:
  """The paper grid's α of this method and rule (grids.PAPER); oracle_cascade
  and token_cascade take SpecCascade[rule]'s grid where the paper has none
  (they share its target)."""
  spec = methods.get(method)
  rule = (rule or spec.default_rule) if spec.takes_rule else ""
  for c in grids.PAPER:
    if c.method == method and (not spec.takes_rule or c.rule == rule):
      return c.alphas
  for c in grids.PAPER:
    if c.method == "spec_cascade" and c.rule == rule:
      return c.alphas
  raise UsageError(f"no default α grid for method={method!r}, rule={rule!r}; pass alphas=")


def order_cautious_to_bold(alphas: Sequence[float], method: str,
                           rule: str | None) -> tuple[float, ...]:
  """`alphas` sorted from cautious (most verifier) to bold (most drafter)."""
  larger_is_bolder = BOLDER_WITH_LARGER_ALPHA[alpha_key(method, rule)]
  return tuple(sorted((float(a) for a in alphas), reverse=not larger_is_bolder))


# ------------------------------------------------------------------ losses


def token_disagreement(output: Sequence[int], verifier: Sequence[int]) -> float:
  """Share of positions where `output` differs from `verifier` (both cut after
  EOS), over the longer of the two; positions past the shorter one differ."""
  n = max(len(output), len(verifier))
  if n == 0:
    return 0.0
  same = sum(int(a == b) for a, b in zip(output, verifier))
  return (n - same) / n


def per_example_losses(loss, outputs: Sequence[Sequence[int]],
                       verifier_outputs: Sequence[Sequence[int]],
                       references: Sequence[str] | None = None,
                       decode: Callable[[Sequence[int]], str] | None = None,
                       postprocess: Callable[[str], Any] | None = None,
                       verifier_scores: Sequence[float] | None = None) -> np.ndarray:
  """[n] losses of `outputs` against `verifier_outputs` (id lists cut after EOS),
  in the loss's own units (module docstring). `verifier_scores`: the
  verifier's sentence scores if already computed (they do not depend on α)."""
  if callable(loss):
    refs = references if references is not None else [None] * len(outputs)
    return np.array([float(loss(list(y), list(v), r))
                     for y, v, r in zip(outputs, verifier_outputs, refs)], np.float64)
  if loss == "token":
    return np.array([token_disagreement(y, v) for y, v in zip(outputs, verifier_outputs)])
  from spec_cascade_jax.evaluation import metrics
  texts = [_text(decode, postprocess, y) for y in outputs]
  if verifier_scores is None:
    verifier_scores = sequence_scores(loss, verifier_outputs, references, decode, postprocess)
  mine = metrics.sentence_scores(loss, references, texts)
  drop = np.maximum(0.0, np.asarray(verifier_scores) - np.asarray(mine))
  return drop / 100.0 if loss == "exact_match" else drop


def _text(decode, postprocess, ids) -> str:
  text = decode(ids)
  return str(postprocess(text)) if postprocess is not None else text


def sequence_scores(loss: str, outputs, references, decode, postprocess=None) -> list[float]:
  """Sentence scores (0-100) of decoded `outputs` for a sequence loss."""
  from spec_cascade_jax.evaluation import metrics
  return metrics.sentence_scores(loss, references,
                                 [_text(decode, postprocess, y) for y in outputs])


# ------------------------------------------------------------------ the choice


@dataclasses.dataclass(frozen=True)
class AlphaRow:
  """One α of the grid: its calibration loss (mean, in the loss's units), the
  LTT p-value of "mean loss > ε", whether fixed-sequence testing certified it,
  and its machine-independent cost on the calibration inputs."""
  alpha: float
  loss_mean: float
  pvalue: float
  certified: bool
  verifier_calls_per_token: float
  drafter_steps_per_token: float


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
  """What `calibrate` returns.

  alpha: the chosen α, None where no α of the grid is certified.
  table: every α tried, cautious → bold (AlphaRow).
  guarantee: what the certificate says, as a sentence.
  """
  alpha: float | None
  table: tuple[AlphaRow, ...]
  method: str
  rule: str
  loss: str
  epsilon: float
  delta: float
  n: int
  cost_target: float | None
  guarantee: str

  @property
  def certified_alphas(self) -> tuple[float, ...]:
    return tuple(r.alpha for r in self.table if r.certified)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_markdown(self) -> str:
    name = f"{self.method}[{self.rule}]" if self.rule else self.method
    lines = [f"Calibrated α for {name}: "
             + ("none certified" if self.alpha is None else f"**{self.alpha:g}**"),
             "", self.guarantee, "",
             f"| α | mean {self.loss} loss | p-value | certified | verifier calls / token "
             "| drafter steps / token |", "|---|---|---|---|---|---|"]
    for r in self.table:
      chosen = " ←" if self.alpha is not None and r.alpha == self.alpha else ""
      lines.append(f"| {r.alpha:g}{chosen} | {r.loss_mean:.4f} | {r.pvalue:.3g} | "
                   f"{'yes' if r.certified else 'no'} | {r.verifier_calls_per_token:.3f} | "
                   f"{r.drafter_steps_per_token:.3f} |")
    return "\n".join(lines)


def _is_number(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_target(loss, epsilon: float, delta: float, cost_target: float | None = None) -> float:
  """Validates the target; returns the loss's bound (ε / bound must lie in (0, 1))."""
  if not callable(loss) and loss not in LOSSES:
    raise UsageError(f"loss={loss!r}; use one of {LOSSES} or a callable "
                     "fn(output_ids, verifier_ids, reference) -> float in [0, 1].")
  bound = 1.0 if callable(loss) else LOSS_BOUNDS[loss]
  if not _is_number(epsilon) or not 0.0 < epsilon < bound:
    raise UsageError(f"epsilon={epsilon!r} must lie in (0, {bound:g}) for loss "
                     f"{getattr(loss, '__name__', loss)!r} (its units: "
                     f"{'points' if bound == 100.0 else 'a share'}).")
  if not _is_number(delta) or not 0.0 < delta < 1.0:
    raise UsageError(f"delta={delta!r} must lie in (0, 1): the allowed probability that "
                     "the calibration set is unlucky (0.1 or 0.05 are usual).")
  if cost_target is not None and not (_is_number(cost_target) and cost_target > 0):
    raise UsageError(f"cost_target={cost_target!r} must be a positive number of verifier "
                     "calls per token (or None: the fewest among the certified α).")
  return bound


def choose(alphas: Sequence[float], losses: np.ndarray, verifier_calls: Sequence[float],
           drafter_steps: Sequence[float], *, epsilon: float, delta: float,
           bound: float = 1.0, cost_target: float | None = None, binary: bool = False
           ) -> tuple[tuple[AlphaRow, ...], int | None]:
  """Learn then Test on `losses` [A, n] (row a: α = alphas[a], the grid ordered
  cautious → bold; in the loss's units, bounded by `bound`); returns the table
  and the index of the chosen α (None: none certified, or none within the cost).
  binary: the loss takes only the values 0 and bound (exact match): the exact
  binomial p-value (risk.pvalue).

  Without a cost target: the certified α with the fewest verifier calls per
  token (ties: the smaller loss). With one: the certified α of least loss among
  those at no more than `cost_target` verifier calls per token.
  """
  x = np.asarray(losses, np.float64) / bound
  pvalues, k = risk.certify(x, epsilon / bound, delta, binary)
  table = tuple(AlphaRow(float(a), float(m) * bound, float(p), i < k, float(v), float(d))
                for i, (a, m, p, v, d) in enumerate(zip(alphas, x.mean(axis=1), pvalues,
                                                        verifier_calls, drafter_steps)))
  candidates = [i for i in range(k)
                if cost_target is None or table[i].verifier_calls_per_token <= cost_target]
  if not candidates:
    return table, None
  if cost_target is None:
    key = lambda i: (table[i].verifier_calls_per_token, table[i].loss_mean)  # noqa: E731
  else:
    key = lambda i: (table[i].loss_mean, table[i].verifier_calls_per_token)  # noqa: E731
  return table, min(candidates, key=key)


def guarantee_sentence(alpha: float | None, table: Sequence[AlphaRow], loss, epsilon: float,
                       delta: float, n: int, cost_target: float | None = None) -> str:
  """What the certificate promises, in words."""
  words = _LOSS_WORDS.get(loss, f"loss {getattr(loss, '__name__', 'callable')}")
  certified = [r.alpha for r in table if r.certified]
  if not certified:
    need = risk.min_examples(epsilon / (1.0 if callable(loss) else LOSS_BOUNDS[loss]), delta)
    more = (f" With {n} examples no α can be: at ε = {epsilon:g} and δ = {delta:g} it takes "
            f"at least {need}." if n < need else "")
    return (f"No α of the grid is certified for mean {words} ≤ {epsilon:g} at δ = "
            f"{delta:g} on {n} calibration examples: keep the verifier (or lossless "
            f"speculative decoding).{more}")
  out = (f"With probability at least {1 - delta:g} over the draw of the {n} calibration "
         f"examples, each of the certified α ({', '.join(f'{a:g}' for a in certified)}) has "
         f"an expected {words} of at most {epsilon:g} on new inputs exchangeable with the "
         "calibration inputs (drawn from the same distribution); the guarantee says nothing "
         "about inputs from another distribution.")
  if alpha is None:
    return out + (f" None of them costs at most {cost_target:g} verifier calls per token, "
                  "so none is chosen.")
  return out + f" Chosen: α = {alpha:g}."


# ------------------------------------------------------------------ decoding


def _rows(inputs) -> list[list[int]]:
  """Token-id rows: a sequence of id lists, or a [N, S] array (0 = pad)."""
  if hasattr(inputs, "ndim"):
    arr = np.asarray(inputs)
    if arr.ndim != 2:
      raise UsageError(f"inputs must be [N, S] token ids or a list of id lists; got shape "
                       f"{arr.shape}.")
    rows = [[int(t) for t in r[:int(np.max(np.nonzero(r)[0], initial=-1)) + 1]] for r in arr]
  else:
    rows = [[int(t) for t in r] for r in inputs]
  if not rows:
    raise UsageError("inputs is empty: calibration needs examples.")
  if any(not r for r in rows):
    raise UsageError("an input row is empty; every row needs at least one token "
                     "(an empty input is the EOS id 1 alone).")
  return rows


def _fingerprint(rows) -> str:
  return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def _model_name(model) -> str:
  cfg = getattr(model, "config", None)
  return f"{getattr(cfg, 'name', type(model).__name__)}:{getattr(model, 'vocab_size', '?')}"


def cache_group(method: str, rule: str | None, alpha: float | None) -> str:
  """A cache's group of rows: "verifier" for the verifier's outputs, else
  "method[rule] α=…" (one file serves every method, rule and α of a pair and inputs)."""
  if method == "verifier":
    return "verifier"
  return f"{method}[{rule or ''}] α={float(alpha)!r}"


class _Cache:
  """Decoded rows {group: {example index: {"tokens", "stats"}}} saved as JSON
  (groups: `cache_group`)."""

  def __init__(self, path: str | None, context: dict):
    self.path, self.context, self.groups = path, context, {}
    if path and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        stored = json.load(f)
      if stored.get("context") != context:
        diff = {k: (stored.get("context", {}).get(k), v) for k, v in context.items()
                if stored.get("context", {}).get(k) != v}
        raise UsageError(f"{path} caches a calibration with other settings (stored, now): "
                         f"{diff}; use another cache_path, or the same settings to resume.")
      self.groups = stored["groups"]

  def has(self, group: str, i: int) -> bool:
    return str(i) in self.groups.get(group, {})

  def get(self, group: str, i: int) -> dict:
    return self.groups[group][str(i)]

  def put(self, group: str, i: int, tokens: list[int], stats: dict) -> None:
    self.groups.setdefault(group, {})[str(i)] = {"tokens": tokens, "stats": stats}

  def save(self) -> None:
    if not self.path:
      return
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump({"context": self.context, "groups": self.groups}, f)
    os.replace(tmp, self.path)   # atomic: an interrupt leaves the previous file


def _decode_jobs(drafter, verifier, rows, jobs, cache, *, method, generate_kwargs,
                 batch_size, max_new_tokens, seed, bar_desc, progress) -> None:
  """Decodes jobs [(group, alpha, example index)] in batches of `batch_size`
  rows, all of one shape (padded inputs, filler rows), into `cache`."""
  import jax
  from spec_cascade_jax.decoding import api
  from spec_cascade_jax.decoding.padding import pad_batch
  from spec_cascade_jax.evaluation import infer
  length = -(-max(len(r) for r in rows) // 16) * 16
  eos = api.model_eos_ids(verifier, "verifier")
  batches = [jobs[s:s + batch_size] for s in range(0, len(jobs), batch_size)]
  todo = [(b, batch) for b, batch in enumerate(batches)
          if not all(cache.has(g, i) for g, _, i in batch)]
  if progress:
    from tqdm.auto import tqdm
    todo = tqdm(todo, desc=bar_desc)
  for b, batch in todo:
    sub = [rows[i] for _, _, i in batch]
    ids = pad_batch(sub, length, rows=batch_size)
    kw = dict(generate_kwargs)
    if methods.get(method).takes_alpha:
      alpha = np.full((batch_size,), batch[0][1], np.float32)   # filler rows: any valid α
      alpha[:len(batch)] = [a for _, a, _ in batch]
      kw["alpha"] = alpha
    res = api.generate(drafter, verifier, ids, method=method, max_new_tokens=max_new_tokens,
                       rng=jax.random.fold_in(jax.random.PRNGKey(seed), b), **kw,
                       **infer.prompt_kwargs(verifier, sub, ids))
    for r, (g, _, i) in enumerate(batch):
      cache.put(g, i, infer.cut_at_eos([int(t) for t in res.tokens[r]], eos),
                {k: int(v[r]) for k, v in res.stats.items()})
    cache.save()


def calibrate(drafter, verifier, inputs, *, method: str = "spec_cascade",
              rule: str | None = None, epsilon: float, delta: float = 0.1,
              loss: str | Callable = "token", alphas: Sequence[float] | None = None,
              references: Sequence[str] | None = None, max_new_tokens: int = 64,
              batch_size: int = 64, cost_target: float | None = None,
              cache_path: str | None = None, vocabulary=None,
              num_draft_tokens: int | None = None, temperature: float = 0.0, seed: int = 0,
              postprocess: Callable[[str], Any] | None = None,
              progress: bool = True) -> CalibrationResult:
  """The α of `method` (and `rule`) with the least cost whose expected loss
  against the verifier is certified ≤ ε with probability ≥ 1 − δ.

  Args:
    drafter, verifier: models (models.protocol), as for `generate`.
    inputs: calibration prompts: a list of token-id lists, or a [N, S] int
      array (0 = pad). They stand for the inputs the guarantee is about.
    method, rule: any method with an α (methods.taking("alpha")); rule None is
      the method's default.
    epsilon, delta: the target, mean loss ≤ ε with probability ≥ 1 − δ; ε in
      the loss's units (module docstring: a share, or points of chrF / BLEU).
    loss: "token", "chrf", "bleu", "exact_match" or a callable (module docstring).
    alphas: the grid (ordered cautious → bold here); None: `default_alphas`.
    references: one reference text per input; needed by chrf, bleu, exact_match.
    vocabulary: decodes ids to text for the text losses: an object with
      `.decode(ids)`, or a name or path for `data.vocab.load_vocabulary`.
    cost_target: at most this many verifier calls per token; the certified α
      of best quality that meets it is chosen. None: the certified α with the
      fewest verifier calls per token.
    cache_path: JSON of decoded rows; a rerun with the same settings resumes.
    num_draft_tokens, temperature, seed: as for `generate` (batch b samples
      with fold_in(PRNGKey(seed), b)).
    postprocess: text -> answer before exact match (GSM8K's final number).
  Raises:
    UsageError (a ValueError): a bad argument, before anything is compiled.
  """
  from spec_cascade_jax.decoding import api
  spec = methods.get(method)
  key = alpha_key(method, rule)
  rule = (rule or spec.default_rule) if spec.takes_rule else None
  bound = check_target(loss, epsilon, delta, cost_target)
  rows = _rows(inputs)
  n = len(rows)
  grid = order_cautious_to_bold(default_alphas(method, rule) if alphas is None else alphas,
                                method, rule)
  if not grid or len(set(grid)) != len(grid):
    raise UsageError(f"alphas must be a non-empty grid without repeats; got {alphas!r}.")
  if not isinstance(batch_size, int) or batch_size < 1:
    raise UsageError(f"batch_size must be an int >= 1; got {batch_size!r}.")
  gen = dict(num_draft_tokens=num_draft_tokens, temperature=temperature)
  if spec.takes_rule:
    gen["rule"] = rule
  for a in grid:   # every α in range, every setting valid: raises before compiling
    api.check_settings(method=method, alpha=a, max_new_tokens=max_new_tokens,
                       rng=0 if temperature > 0 else None, **gen)
  needs_text = loss in ("chrf", "bleu", "exact_match")
  if needs_text or (callable(loss) and references is not None):
    if references is None or len(references) != n:
      raise UsageError(f"loss={getattr(loss, '__name__', loss)!r} needs one reference per "
                       f"input: got {'none' if references is None else len(references)} "
                       f"for {n} inputs.")
  decode = None
  if needs_text:
    if vocabulary is None:
      raise UsageError(f"loss={loss!r} compares texts: pass vocabulary= (an object with "
                       ".decode(ids), or a name such as 'gettext').")
    if isinstance(vocabulary, (str, os.PathLike)):
      from spec_cascade_jax.data.vocab import load_vocabulary
      vocabulary = load_vocabulary(os.fspath(vocabulary), models=(drafter, verifier))
    decode = vocabulary.decode

  context = {"max_new_tokens": max_new_tokens, "num_draft_tokens": num_draft_tokens,
             "temperature": float(temperature),
             "seed": seed, "inputs": _fingerprint(rows), "drafter": _model_name(drafter),
             "verifier": _model_name(verifier)}
  cache = _Cache(cache_path, context)
  common = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed,
                progress=progress)
  _decode_jobs(drafter, verifier, rows, [("verifier", None, i) for i in range(n)], cache,
               method="verifier", generate_kwargs={}, bar_desc="verifier outputs", **common)
  jobs = [(cache_group(method, rule, a), a, i) for a in grid for i in range(n)]
  _decode_jobs(drafter, verifier, rows, jobs, cache, method=method, generate_kwargs=gen,
               bar_desc=f"{method}[{key}] × {len(grid)} α", **common)

  from spec_cascade_jax.evaluation import infer
  ver = [cache.get("verifier", i)["tokens"] for i in range(n)]
  ver_scores = sequence_scores(loss, ver, references, decode, postprocess) if needs_text \
      else None
  losses, calls, steps = [], [], []
  for a in grid:
    got = [cache.get(cache_group(method, rule, a), i) for i in range(n)]
    x = per_example_losses(loss, [g["tokens"] for g in got], ver, references, decode,
                           postprocess, ver_scores)
    if (x < 0).any() or (x > bound).any() or np.isnan(x).any():
      raise ValueError(f"losses at α = {a:g} fall outside [0, {bound:g}]: "
                       f"[{np.nanmin(x)}, {np.nanmax(x)}]; a callable loss must return "
                       "values in [0, 1].")
    losses.append(x)
    cost = infer.cost_stats({k: np.array([g["stats"][k] for g in got]) for k in got[0]["stats"]},
                            method)
    calls.append(cost["verifier_calls_per_token"])
    steps.append(cost["drafter_steps_per_token"])
  table, chosen = choose(grid, np.stack(losses), calls, steps, epsilon=epsilon, delta=delta,
                         bound=bound, cost_target=cost_target,
                         binary=loss == "exact_match")
  alpha = None if chosen is None else table[chosen].alpha
  loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "callable")
  return CalibrationResult(
      alpha=alpha, table=table, method=method, rule=rule or "", loss=loss_name,
      epsilon=float(epsilon), delta=float(delta), n=n, cost_target=cost_target,
      guarantee=guarantee_sentence(alpha, table, loss, epsilon, delta, n, cost_target))


def save_result(result: CalibrationResult, output_dir: str) -> tuple[str, str]:
  """Writes calibration.json and calibration.md in `output_dir`; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  js, md = (os.path.join(output_dir, f"calibration.{ext}") for ext in ("json", "md"))
  with open(js, "w", encoding="utf-8") as f:
    json.dump(result.to_dict(), f, indent=1, ensure_ascii=False)
  with open(md, "w", encoding="utf-8") as f:
    f.write(result.to_markdown() + "\n")
  return js, md


def run_calibration(drafter="demo-drafter", verifier="demo-verifier",
                    output_dir: str = "runs/calibrate", task: str = "gettext_en_de",
                    split: str = "validation", method: str = "spec_cascade",
                    rule: str | None = "token_v3", epsilon: float = 0.05,
                    delta: float = 0.1, loss: str = "token",
                    alphas: Sequence[float] | None = None,
                    cost_target: float | None = None, num_examples: int | None = 500,
                    num_draft_tokens: int = 5, temperature: float = 0.0, seed: int = 0,
                    batch_size: int = 64, max_new_tokens: int = 64,
                    max_input_length: int = 128, vocabulary: str = "gettext",
                    t5_vocab_path: str | None = None) -> CalibrationResult:
  """The calibrate job (configs/runs/calibrate.gin): calibrates on
  `num_examples` of a task split (spread over it; None = all), writes
  calibration.json / calibration.md in `output_dir`, and keeps its decoded
  rows in `output_dir`/calibration_cache.json (a rerun resumes)."""
  from spec_cascade_jax.evaluation import infer
  infer.check_task(task, t5_vocab_path)
  spec = methods.get(method)
  rule = rule if spec.takes_rule else None   # a run file's RULE is ignored without one
  check_target(loss, epsilon, delta, cost_target)
  alpha_key(method, rule)
  q_model, p_model = infer.resolve_model(drafter), infer.resolve_model(verifier)
  data = infer.load_task(task, split, vocabulary, max_input_length, num_examples,
                         t5_vocab_path, models=(q_model, p_model))
  result = calibrate(q_model, p_model, data.input_ids, method=method, rule=rule,
                     epsilon=epsilon, delta=delta, loss=loss, alphas=alphas,
                     references=data.targets, max_new_tokens=max_new_tokens,
                     batch_size=batch_size, cost_target=cost_target,
                     cache_path=os.path.join(output_dir, "calibration_cache.json"),
                     vocabulary=types.SimpleNamespace(decode=data.decode),  # the task's own
                     num_draft_tokens=num_draft_tokens,
                     temperature=temperature, seed=seed)
  print(result.to_markdown())
  for path in save_result(result, output_dir):
    print(f"wrote {path}")
  return result


# ------------------------------------------------------------------ the sweep's row

# The main job's "calibrated α (ε, δ)" row (summary.py): per curve, Learn then
# Test on one half of the sweep's quality examples, checked on the other half,
# from the per-example losses each greedy point records (`sweep_losses`).
# (loss, ε in its units, bound): token disagreement, and sentence-chrF drop in points.
SWEEP_TARGETS = (("token", 0.05, 1.0), ("chrf", 2.0, 100.0))
SWEEP_DELTA = 0.1
SWEEP_SPLIT_SEED = 0


def sweep_losses(method: str, tokens: Sequence[Sequence[int]], predictions: Sequence[str],
                 references: Sequence[str],
                 verifier_tokens: Sequence[Sequence[int]] | None) -> dict:
  """A greedy sweep point's per-example record: "chrf" (sentence chrF of each
  prediction, 0-100), and "tokens" (its outputs) for the verifier point or
  "token_loss" (`token_disagreement` against `verifier_tokens`, the verifier
  point's outputs; left out where those are not known) for the others."""
  from spec_cascade_jax.evaluation import metrics
  out: dict = {"chrf": [round(x, 3) for x in metrics.sentence_scores("chrf", references,
                                                                     predictions)]}
  if method == "verifier":
    out["tokens"] = [[int(t) for t in row] for row in tokens]
  elif verifier_tokens is not None:
    out["token_loss"] = [round(token_disagreement(t, v), 6)
                         for t, v in zip(tokens, verifier_tokens)]
  return out


def sweep_verifier_tokens(records: Sequence[Mapping]) -> list[list[int]] | None:
  """The greedy verifier point's outputs, as `sweep_losses` stored them (None
  in a results file written before they were recorded)."""
  for r in records:
    if r.get("method") == "verifier" and r.get("temperature") == 0:
      return (r.get("per_example") or {}).get("tokens")
  return None


def calibrate_sweep(records: Sequence[Mapping]) -> list[dict]:
  """Rows {curve, loss, epsilon, delta, alpha, n_calibration, n_check,
  heldout_loss, verifier_calls_per_token, drafter_steps_per_token} per greedy
  curve with an α and per target of SWEEP_TARGETS: α chosen on a random half
  of the examples, its mean loss on the other half. Curves whose points lack
  per-example losses (older results files) get no row."""
  greedy = [r for r in records if r.get("temperature") == 0 and r.get("seed", 0) == 0]
  ver = [r for r in greedy if r["method"] == "verifier" and r.get("per_example")]
  if not ver:
    return []
  ver_chrf = np.asarray(ver[0]["per_example"]["chrf"], np.float64)
  n = len(ver_chrf)
  perm = np.random.default_rng(SWEEP_SPLIT_SEED).permutation(n)
  cal, check = perm[:n // 2], perm[n // 2:]
  out = []
  for curve in dict.fromkeys(r["curve"] for r in greedy):
    pts = [r for r in greedy if r["curve"] == curve]
    method = pts[0]["method"]
    if not methods.get(method).takes_alpha or not all(
        len((r.get("per_example") or {}).get("token_loss") or ()) == n for r in pts):
      continue
    if len({r["alpha"] for r in pts}) != len(pts):
      continue   # a draft-policy curve sweeping (τ, α): α alone does not order it
    rule = (pts[0]["rule"] or None) if methods.get(method).takes_rule else None
    by_alpha = {r["alpha"]: r for r in pts}
    grid = order_cautious_to_bold(by_alpha, method, rule)
    rs = [by_alpha[a] for a in grid]
    calls = [r["cost"]["verifier_calls_per_token"] for r in rs]
    steps = [r["cost"]["drafter_steps_per_token"] for r in rs]
    for loss, eps, bound in SWEEP_TARGETS:
      if loss == "token":
        x = np.array([r["per_example"]["token_loss"] for r in rs], np.float64)
      else:
        x = np.maximum(0.0, ver_chrf[None] - np.array([r["per_example"]["chrf"] for r in rs]))
      table, i = choose(grid, x[:, cal], calls, steps, epsilon=eps, delta=SWEEP_DELTA,
                        bound=bound)
      out.append({"curve": curve, "loss": loss, "epsilon": eps, "delta": SWEEP_DELTA,
                  "alpha": None if i is None else table[i].alpha,
                  "n_calibration": len(cal), "n_check": len(check),
                  "heldout_loss": None if i is None else float(x[i, check].mean()),
                  "verifier_calls_per_token": None if i is None else calls[i],
                  "drafter_steps_per_token": None if i is None else steps[i]})
  return out


def format_sweep_rows(rows: Sequence[Mapping]) -> str:
  """The summary's markdown block for `calibrate_sweep` rows ("" for none)."""
  if not rows:
    return ""
  r0 = rows[0]
  lines = [f"### Calibrated α (ε, δ = {r0['delta']:g})", "",
           f"Learn then Test on {r0['n_calibration']} of the greedy examples, checked on "
           f"the other {r0['n_check']}: the certified α with the fewest verifier calls "
           "per token (docs/design.md §6.6).", "",
           "| method | loss (ε) | calibrated α | held-out loss | verifier calls / token "
           "| drafter steps / token |", "|---|---|---|---|---|---|"]
  for r in rows:
    what = ("token disagreement" if r["loss"] == "token" else "chrF drop") + \
        f" ({r['epsilon']:g})"
    if r["alpha"] is None:
      lines.append(f"| {r['curve']} | {what} | none certified | — | — | — |")
    else:
      lines.append(f"| {r['curve']} | {what} | {r['alpha']:g} | {r['heldout_loss']:.3f} | "
                   f"{r['verifier_calls_per_token']:.3f} | "
                   f"{r['drafter_steps_per_token']:.2f} |")
  return "\n".join(lines + [""])
