"""`generate`: every decoding method behind one validated, compile-cached call.

Static (a change recompiles): method, rule, num_draft_tokens, max_new_tokens,
top_k, seq_confidence, ngram_size, draft_policy, eos_id, input shape, model
configurations, whether input_lengths is given.
Traced (a sweep never recompiles): model weights, input_ids, input_lengths,
alpha, temperature, top_p, draft_threshold, draft_schedule (scalars or per-row
arrays, always passed per row), rng.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import types

import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.decoding import baselines, kernel, lookup, loop, methods, targets

try:  # public in every jax this package supports; the fallback guards a rename
  from jax.core import Tracer as _Tracer
except ImportError:  # pragma: no cover
  from jax._src.core import Tracer as _Tracer
from spec_cascade_jax.decoding.errors import UsageError
from spec_cascade_jax.decoding.methods import ALPHA_RANGES, RULES, SEQ_CONFIDENCES

# Every method (methods.py declares each one: its loop, models, rule, α).
METHODS = methods.names()


def method_takes_rule(method: str) -> bool:
  """Whether `generate(method=method)` accepts a `rule`: spec_cascade,
  token_cascade and oracle_cascade do; a rule passed to another method raises."""
  return methods.get(method).takes_rule


def method_takes_alpha(method: str) -> bool:
  """Whether `generate(method=method)` accepts an `alpha`: the rule methods and
  the methods with an α range (methods.ALPHA_RANGES). drafter, verifier,
  speculative and prompt_lookup have none; an α passed to them raises."""
  return methods.get(method).takes_alpha


def method_takes(method: str, arg: str) -> bool:
  """Whether `generate(method=method)` accepts `arg`, one of the arguments
  only some methods take (methods.METHOD_ARGS: rule, alpha, seq_confidence,
  ngram_size); passing it to another method raises."""
  return methods.get(method).takes(arg)

# Number of times the jitted body was traced, per method: tests assert that
# changing alpha / temperature / top_p does not add traces.
TRACE_COUNTS: collections.Counter = collections.Counter()


@dataclasses.dataclass(frozen=True)
class GenerateResult:
  """tokens: [B, max_new_tokens] int32, EOS (1 for T5; see `generate`'s eos_id)
  included, 0 after it (stats["num_tokens"] gives each row's length where 0 is
  a real token, as for Llama 3 and Qwen 2.5).

  stats: {name: [B] int32} with names loop.STAT_NAMES:
    rounds: verifier calls (speculative rounds; sequential calls for baselines);
    drafter_steps: one-token drafter calls; draft_tokens: drafts proposed;
    accepted: drafts accepted by the test and committed (none counted past
      EOS or max_new_tokens); wasted_drafts: draft_tokens - accepted;
    verified_tokens: tokens the verifier scored in the rounds' chunks
      (drafting methods; 0 for the sequential baselines);
    deferrals: committed positions where the drafter's token counted as
      deferred (targets.py), or 1 per deferred row for seq_cascade;
    sequential_verifier_calls: verifier calls made one after the other by the
      baselines (0 for speculative methods, whose verifier scores chunks);
    num_tokens: generated tokens, EOS included.
  """
  tokens: np.ndarray
  stats: dict[str, np.ndarray]


# The static arguments of `decode` (the keys of `prepare`'s statics).
STATIC_ARGNAMES = ("method", "rule", "num_draft_tokens", "top_k", "max_new_tokens",
                   "seq_confidence", "ngram_size", "draft_policy", "eos_ids")


def decode(drafter, verifier, input_ids, params, rng, input_lengths=None, *,
           method, rule, num_draft_tokens, top_k, max_new_tokens, seq_confidence, ngram_size,
           draft_policy="constant", eos_ids=(loop.EOS,)):
  """The function `generate` compiles: the loop of `method` (methods.py), on
  prepared arguments (`prepare`). Not jitted itself: `jitted_decode` is its
  jit, and the sharded entry point (parallel/generate.py) jits it with
  explicit shardings. Returns (tokens [B, max_new_tokens], stats {name: [B]})."""
  TRACE_COUNTS[method] += 1  # Python side effect: runs once per trace only.
  common = dict(top_k=top_k, max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                input_lengths=input_lengths)
  loop = methods.get(method).loop
  if loop == "lookup":
    return lookup.lookup_decode(verifier, input_ids, params, rng, ngram=ngram_size,
                                gamma=num_draft_tokens, **common)
  if loop == "kernel":
    return kernel.spec_decode(drafter, verifier, input_ids, params, rng,
                              target_fn=targets.get_target(method, rule),
                              gamma=num_draft_tokens, policy=draft_policy,
                              **common)
  if loop == "single":
    model = drafter if method == "drafter" else verifier
    return baselines.single_model(model, input_ids, params, rng,
                                  is_verifier=method == "verifier", **common)
  if loop == "token_cascade":
    return baselines.token_cascade(drafter, verifier, input_ids, params, rng,
                                   chunk=num_draft_tokens + 1, **common)
  if loop == "oracle_cascade":
    return baselines.oracle_cascade(drafter, verifier, input_ids, params, rng,
                                    target_fn=targets.get_target(method, rule), **common)
  return baselines.seq_cascade(drafter, verifier, input_ids, params, rng,
                               confidence=seq_confidence, **common)


jitted_decode = jax.jit(decode, static_argnames=STATIC_ARGNAMES)


def _greedy_key():
  """The key a greedy call passes (it draws nothing from it): made once per
  PRNG implementation, as making it afresh dispatched a computation per call."""
  return _key_of_impl(jax.config.jax_default_prng_impl)


@functools.lru_cache(maxsize=None)
def _key_of_impl(impl: str):
  del impl  # the cache key: jax's default PRNG implementation, read by PRNGKey
  return jax.random.PRNGKey(0)


def _per_row(name, value, batch):
  """Scalar or [B] -> np [B] float32, validated before anything is traced
  (batch None: any number of rows, for `check_settings`)."""
  if isinstance(value, _Tracer):
    raise TypeError(f"{name} is a traced value: call generate() outside jax.jit "
                    "(it is jitted and compile-cached inside already).")
  arr = np.asarray(value, np.float32)
  if arr.ndim == 0:
    arr = np.full((1 if batch is None else batch,), arr, np.float32)
  if arr.ndim != 1 or (batch is not None and arr.shape != (batch,)):
    rows = "B" if batch is None else batch
    raise UsageError(f"{name} must be a scalar or a per-row array of shape ({rows},) "
                     f"for input_ids with {rows} rows; got shape {arr.shape}.")
  if not np.all(np.isfinite(arr)):
    raise UsageError(f"{name} must be finite; got {value!r}.")
  return arr


def _check_alpha(alpha, method, rule):
  key = rule if method_takes_rule(method) else method
  if key not in ALPHA_RANGES:
    return  # the method has no α (drafter, verifier, speculative)
  lo, hi, hi_inclusive = ALPHA_RANGES[key]
  bad = (alpha < lo) | ((alpha > hi) if hi_inclusive else (alpha >= hi))
  if np.any(bad):
    bracket = "]" if hi_inclusive else ")"
    raise UsageError(
        f"alpha={alpha[bad][0]:g} is outside [{lo:g}, {hi:g}{bracket}, the meaningful range "
        f"for {key!r} (see spec_cascade_jax.decoding.targets); pass a value in range.")


def _eos_tuple(value, name: str) -> tuple[int, ...]:
  """An int or a sequence of ints -> tuple of ints (validated)."""
  items = value if isinstance(value, (list, tuple)) else [value]
  out = []
  for e in items:
    if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
      raise UsageError(f"{name} must be an int token id or a sequence of them; got "
                       f"{value!r}.")
    out.append(int(e))
  return tuple(out)


def model_eos_ids(model, name: str = "model") -> tuple[int, ...]:
  """The ids that end `model`'s rows: its `eos_id` attribute (protocol.py), 1
  (T5's) where it has none; validated, as a tuple."""
  return _eos_tuple(getattr(model, "eos_id", loop.EOS), f"{name}.eos_id")


def _resolve_eos(drafter, verifier, eos_id) -> tuple[int, ...]:
  """The static EOS ids: `eos_id` if given, else the models' own `eos_id`
  attribute (protocol.py; 1 where a model has none). The models used must agree."""
  models = [(n, m) for n, m in (("drafter", drafter), ("verifier", verifier))
            if m is not None]
  vocab = min(m.vocab_size for _, m in models)
  if eos_id is not None:
    eos = _eos_tuple(eos_id, "eos_id")
  else:
    own = {n: model_eos_ids(m, n) for n, m in models}
    if len(set(own.values())) > 1:
      raise UsageError(
          f"drafter and verifier end generations with different EOS ids (drafter: "
          f"{list(own['drafter'])}, verifier: {list(own['verifier'])}); pass eos_id= to "
          "generate() to choose the ids (the models must share one vocabulary).")
    eos = next(iter(own.values()))
  bad = [e for e in eos if not 0 <= e < vocab]
  if bad:
    raise UsageError(f"eos_id {bad[0]} is not a token id of the vocabulary [0, {vocab}); "
                     "pass the models' own EOS id(s).")
  return eos


def _check_input_lengths(input_lengths, input_ids) -> np.ndarray:
  """[B] ints in [1, S] -> np int32 [B], validated before anything is traced."""
  if isinstance(input_lengths, _Tracer):
    raise TypeError("input_lengths is a traced value: call generate() outside jax.jit.")
  batch, width = (int(d) for d in input_ids.shape)
  arr = np.asarray(input_lengths)
  if arr.shape != (batch,) or not np.issubdtype(arr.dtype, np.integer):
    raise UsageError(f"input_lengths must be an integer array of shape ({batch},), one "
                     f"prompt length per row of input_ids; got {_short(input_lengths)} "
                     f"(dtype {arr.dtype}).")
  bad = (arr < 1) | (arr > width)
  if bad.any():
    row = int(np.argmax(bad))
    raise UsageError(f"input_lengths[{row}] = {int(arr[row])} is outside [1, {width}]: "
                     f"each row's prompt is input_ids[b, :input_lengths[b]] (at least one "
                     "token, at most the width of input_ids).")
  return arr.astype(np.int32)


def _short(value) -> str:
  """repr of a scalar; shape of an array (an error message names the argument)."""
  shape = getattr(value, "shape", None)
  return repr(value) if not shape else f"<array of shape {tuple(shape)}>"


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# What methods.METHOD_ARGS become for a method that does not take them (the
# statics stay equal, so such a method compiles once).
_UNUSED = {"rule": "", "alpha": 0.0, "seq_confidence": "", "ngram_size": 0,
           "draft_policy": "", "draft_threshold": None, "draft_schedule": None}
_NOT_TAKEN_WHY = {"alpha": " (it has no deferral threshold)"}


def _resolve_method_args(method, **given) -> dict:
  """`given` (some of methods.METHOD_ARGS) with None replaced by the method's
  default, or by a placeholder where the method does not take the argument. An
  argument passed to a method that does not take it would be ignored: raise."""
  spec = methods.get(method)   # an unknown method raises here
  out = {}
  for arg, value in given.items():
    if spec.takes(arg):
      out[arg] = spec.default(arg) if value is None else value
    elif value is None:
      out[arg] = _UNUSED[arg]
    else:
      raise UsageError(
          f"method={method!r} takes no {arg}{_NOT_TAKEN_WHY.get(arg, '')}; drop "
          f"{arg}={_short(value)}, or use a method that takes one: "
          f"{', '.join(repr(m) for m in methods.taking(arg))}.")
  return out


def _draft_settings(policy, threshold, schedule, gamma: int, batch):
  """The draft policy's traced settings, checked: (draft_threshold [B] float32
  or None, draft_schedule [B, 3] int32 or None). A setting of another policy
  than `policy` raises (it would be ignored)."""
  given = {"draft_threshold": threshold, "draft_schedule": schedule}
  for arg, value in given.items():
    owners = methods.POLICY_ARGS[arg]
    if value is not None and policy not in owners:
      raise UsageError(f"{arg} is a setting of the draft policies "
                       f"{', '.join(map(repr, owners))}; with draft_policy={policy!r} it would "
                       f"be ignored: pass draft_policy={owners[0]!r}, or drop {arg}.")
  if policy in methods.POLICY_ARGS["draft_threshold"]:
    if threshold is None:
      threshold = methods.policy_default("draft_threshold", gamma)
    threshold = _per_row("draft_threshold", threshold, batch)
    if np.any((threshold < 0) | (threshold > 1)):
      raise UsageError(f"draft_threshold must be in [0, 1] (a probability: a row stops "
                       f"drafting where the drafter's confidence is below it); got "
                       f"{threshold[(threshold < 0) | (threshold > 1)][0]:g}.")
    return threshold, None
  if policy == "heuristic":
    if schedule is None:
      schedule = methods.policy_default("draft_schedule", gamma)
    if isinstance(schedule, _Tracer):
      raise TypeError("draft_schedule is a traced value: call generate() outside jax.jit.")
    arr = np.asarray(schedule)
    rows = 1 if batch is None else batch
    if arr.ndim == 1:
      arr = np.broadcast_to(arr, (rows,) + arr.shape)
    if (arr.shape != (rows, 3) or not np.issubdtype(arr.dtype, np.integer)):
      raise UsageError(f"draft_schedule must be three ints (start, grow, shrink), or one "
                       f"such triple per row ({rows}, 3); got {_short(schedule)}.")
    start, grow, shrink = arr[:, 0], arr[:, 1], arr[:, 2]
    if np.any((start < 1) | (start > gamma)) or np.any(grow < 0) or np.any(shrink < 0):
      raise UsageError(f"draft_schedule=(start, grow, shrink) needs 1 <= start <= "
                       f"num_draft_tokens={gamma} (the most a round drafts), grow >= 0 "
                       f"and shrink >= 0; got {arr[0].tolist()}.")
    return None, np.ascontiguousarray(arr, np.int32)
  return None, None


def _settings(method, rule, alpha, num_draft_tokens, temperature, top_k, top_p,
              max_new_tokens, rng, seq_confidence, ngram_size, batch,
              draft_policy=None, draft_threshold=None, draft_schedule=None):
  """Every check of generate's settings that needs neither models nor inputs.

  Returns ({rule, seq_confidence, ngram_size, draft_policy, num_draft_tokens,
  top_k, max_new_tokens}: the statics but method, the traced settings as a
  loop.DecodeParams of numpy arrays [B], rng): None replaced by the method's
  defaults.
  """
  args = _resolve_method_args(method, rule=rule, alpha=alpha, seq_confidence=seq_confidence,
                              ngram_size=ngram_size, draft_policy=draft_policy,
                              draft_threshold=draft_threshold, draft_schedule=draft_schedule)
  spec = methods.get(method)
  rule, alpha = args.pop("rule"), args.pop("alpha")
  if spec.takes_rule and rule not in RULES:
    raise UsageError(f"Unknown rule {rule!r}; valid rules: {RULES}.")
  if method == "token_cascade" and rule != "chow":
    raise UsageError(
        f"token_cascade supports rule='chow' only (rule={rule!r} needs the verifier at "
        "every position): use method='oracle_cascade' for a sequential reference or "
        "method='spec_cascade' for the speculative one.")
  if spec.takes("seq_confidence") and args["seq_confidence"] not in SEQ_CONFIDENCES:
    raise UsageError(f"seq_confidence={args['seq_confidence']!r}; use one of "
                     f"{SEQ_CONFIDENCES}.")
  if spec.takes("ngram_size") and (not _is_int(args["ngram_size"])
                                   or args["ngram_size"] < 1):
    raise UsageError(f"ngram_size must be an int >= 1 (the trailing tokens that must "
                     f"match for prompt_lookup); got {args['ngram_size']!r}.")
  if not _is_int(max_new_tokens) or max_new_tokens < 1:
    raise UsageError(f"max_new_tokens must be an int >= 1; got {max_new_tokens!r}.")
  if num_draft_tokens is None:
    num_draft_tokens = min(methods.DEFAULT_NUM_DRAFT_TOKENS, int(max_new_tokens))
  if not _is_int(num_draft_tokens) or num_draft_tokens < 1:
    raise UsageError(f"num_draft_tokens must be an int >= 1; got {num_draft_tokens!r}.")
  if spec.uses_num_draft_tokens and num_draft_tokens > max_new_tokens:
    raise UsageError(
        f"num_draft_tokens={num_draft_tokens} exceeds max_new_tokens={max_new_tokens}: no "
        "round commits more than max_new_tokens tokens, so longer drafts are wasted work "
        f"in a larger program; pass num_draft_tokens <= {max_new_tokens} (None takes "
        f"{methods.DEFAULT_NUM_DRAFT_TOKENS}, capped at max_new_tokens).")
  if not _is_int(top_k) or top_k < 0:
    raise UsageError(f"top_k must be an int >= 0 (0 disables it); got {top_k!r}.")
  policy = args["draft_policy"]
  if spec.takes("draft_policy") and policy not in methods.DRAFT_POLICIES:
    raise UsageError(f"Unknown draft_policy {policy!r}; valid policies: "
                     f"{methods.DRAFT_POLICIES} (decoding/drafting.py).")
  draft_threshold, draft_schedule = _draft_settings(
      policy, args["draft_threshold"], args["draft_schedule"], int(num_draft_tokens), batch)
  alpha = _per_row("alpha", alpha, batch)
  temperature = _per_row("temperature", temperature, batch)
  top_p = _per_row("top_p", top_p, batch)
  _check_alpha(alpha, method, rule)
  if np.any(temperature < 0):
    raise UsageError(f"temperature must be >= 0 (0 = greedy); got {temperature.min():g}.")
  if np.any((top_p <= 0) | (top_p > 1)):
    raise UsageError(f"top_p must be in (0, 1] (1 disables nucleus sampling); got "
                     f"{top_p[(top_p <= 0) | (top_p > 1)][0]:g}.")
  if rng is None:
    if np.any(temperature > 0):
      raise UsageError(
          "temperature > 0 samples: pass rng=jax.random.PRNGKey(seed) (the same key "
          "draws the same samples, a new key new ones); rng=None is for greedy decoding "
          "(temperature 0 in every row) only.")
    rng = _greedy_key()  # unused by greedy decoding; the compiled call takes one
  statics = dict(rule=rule, num_draft_tokens=int(num_draft_tokens), top_k=int(top_k),
                 max_new_tokens=int(max_new_tokens), seq_confidence=args["seq_confidence"],
                 ngram_size=int(args["ngram_size"]), draft_policy=policy)
  if not spec.uses_num_draft_tokens:
    statics["num_draft_tokens"] = 1  # unused by the method: do not recompile per γ
  params = loop.DecodeParams(alpha=alpha, temperature=temperature, top_p=top_p,
                             draft_threshold=draft_threshold, draft_schedule=draft_schedule)
  return statics, params, rng


def check_settings(**generate_kwargs) -> None:
  """Raises what `generate` would raise for these settings (method, rule, alpha,
  num_draft_tokens, temperature, ...; its keyword arguments but the models and
  inputs) without models or inputs, so that a job can fail before it loads
  anything. Arguments left out take generate's defaults."""
  unknown = sorted(set(generate_kwargs) - set(GENERATE_DEFAULTS))
  if unknown:
    raise TypeError(f"Unknown generate arguments {unknown}; valid: "
                    f"{sorted(GENERATE_DEFAULTS)}.")
  kw = {**GENERATE_DEFAULTS, **generate_kwargs}
  _settings(kw["method"], kw["rule"], kw["alpha"], kw["num_draft_tokens"], kw["temperature"],
            kw["top_k"], kw["top_p"], kw["max_new_tokens"], kw["rng"], kw["seq_confidence"],
            kw["ngram_size"], batch=None, draft_policy=kw["draft_policy"],
            draft_threshold=kw["draft_threshold"], draft_schedule=kw["draft_schedule"])


def _check_input_shape(input_ids):
  if not hasattr(input_ids, "dtype") or not hasattr(input_ids, "ndim"):
    raise TypeError(f"input_ids must be an integer array [B, S]; got {type(input_ids)}.")
  if not jnp.issubdtype(input_ids.dtype, jnp.integer):
    raise TypeError(f"input_ids must have an integer dtype (token ids); got "
                    f"{input_ids.dtype}. Cast with .astype(jnp.int32).")
  if input_ids.ndim != 2:
    raise UsageError(f"input_ids must be rank 2 [batch, length]; got shape "
                     f"{input_ids.shape}. Add a batch axis with input_ids[None].")
  if input_ids.shape[0] < 1:
    raise UsageError("input_ids has no rows.")
  if input_ids.shape[1] < 1:
    raise UsageError(f"input_ids has shape {tuple(input_ids.shape)}: every row needs at "
                     "least one token (an empty input is the EOS id 1 alone).")


def _validate(drafter, verifier, input_ids, method, top_k):
  """The checks of the models (the ones `method` uses, others None) and of
  the token ids against their vocabulary."""
  spec = methods.get(method)
  if spec.uses_drafter and drafter is None:
    raise UsageError(f"method={method!r} needs a drafter model; got drafter=None.")
  if spec.uses_verifier and verifier is None:
    raise UsageError(f"method={method!r} needs a verifier model; got verifier=None "
                     "(use method='drafter' to decode with the drafter alone).")
  if drafter is not None and verifier is not None:
    if drafter.vocab_size != verifier.vocab_size:
      raise UsageError(f"drafter and verifier vocabularies differ ({drafter.vocab_size} vs "
                       f"{verifier.vocab_size}); both models must share one vocabulary. "
                       "Where they share a tokenizer and one embedding only has extra "
                       "padding rows (Qwen 2.5 0.5B and 7B), widen the smaller: "
                       "spec_cascade_jax.models.padded.pad_vocabulary(model, size).")
  name, model = ("verifier", verifier) if verifier is not None else ("drafter", drafter)
  if top_k > model.vocab_size:
    raise UsageError(
        f"top_k={top_k} exceeds the {name}'s vocabulary of {model.vocab_size} tokens (top_k "
        f"keeps the k most likely tokens): pass top_k <= {model.vocab_size}, or 0 to keep "
        "them all.")
  if not isinstance(input_ids, jax.core.Tracer) and getattr(input_ids, "is_fully_addressable",
                                                            True):
    ids = np.asarray(input_ids)
    bad = (ids < 0) | (ids >= model.vocab_size)
    if bad.any():
      row, col = (int(i) for i in np.argwhere(bad)[0])
      raise UsageError(
          f"input_ids[{row}, {col}] = {int(ids[row, col])} is not a token id of this "
          f"vocabulary [0, {model.vocab_size}); encode the text with the models' own "
          "vocabulary (0 pads, 1 is EOS).")


def prepare(drafter, verifier, input_ids, *, method, rule, alpha, num_draft_tokens,
            temperature, top_k, top_p, max_new_tokens, rng, seq_confidence, ngram_size,
            draft_policy=None, draft_threshold=None, draft_schedule=None,
            eos_id=None, input_lengths=None):
  """Validation and static normalisation shared by `generate` and the sharded
  entry point (parallel/generate.py): every check runs here, before anything
  is traced; a mistake raises UsageError (a ValueError).

  Returns (drafter, verifier, params: a loop.DecodeParams of numpy arrays
  [B] (alpha, temperature, top_p, and the draft policy's settings, None where
  unused), rng, statics): unused models become None (no transfer, no
  cache-key effect). None for rule, alpha, num_draft_tokens, seq_confidence,
  ngram_size, draft_policy and its settings: the method's default (see `generate`); eos_id None: the used models' own
  (statics["eos_ids"]). input_lengths: checked only (a global multi-host array
  is not), for the sharded entry point.
  """
  spec = methods.get(method)   # an unknown method raises here
  _check_input_shape(input_ids)
  settings, per_row, rng = _settings(
      method, rule, alpha, num_draft_tokens, temperature, top_k, top_p, max_new_tokens, rng,
      seq_confidence, ngram_size, batch=int(input_ids.shape[0]), draft_policy=draft_policy,
      draft_threshold=draft_threshold, draft_schedule=draft_schedule)
  if not spec.uses_verifier:
    verifier = None
  if not spec.uses_drafter:
    drafter = None
  _validate(drafter, verifier, input_ids, method, settings["top_k"])
  statics = dict(method=method, **settings, eos_ids=_resolve_eos(drafter, verifier, eos_id))
  if input_lengths is not None and getattr(input_lengths, "is_fully_addressable", True):
    _check_input_lengths(input_lengths, input_ids)
  return drafter, verifier, per_row, rng, statics


def generate(drafter, verifier, input_ids, method: str = methods.DEFAULT_METHOD,
             rule: str | None = None, alpha=None, num_draft_tokens: int | None = None,
             temperature=0.0, top_k: int = 0, top_p=1.0, max_new_tokens: int = 64,
             rng=None, seq_confidence: str | None = None, ngram_size: int | None = None,
             draft_policy: str | None = None, draft_threshold=None, draft_schedule=None,
             pad_single_row: bool | None = None, eos_id=None,
             input_lengths=None) -> GenerateResult:
  """Decodes `input_ids` [B, S] (0 = pad) with `method`; see docs/design.md §3.

  `spec_cascade_jax.generate` is this function, plus `mesh=` / `rules=` for
  sharded decoding (spec_cascade_jax/generation.py).

  drafter / verifier: models implementing models.protocol.DecoderModel (either
  may be None for the method that does not use it). alpha, temperature, top_p:
  scalars or per-row [B] arrays (traced).
  rng: a jax.random.PRNGKey; required when any row samples (temperature > 0),
  where rng=None raises (a fixed key would repeat the same samples every
  call). Greedy decoding (temperature 0 everywhere) needs none.
  Arguments only some methods take (decoding/methods.py): None means the
  method's default, and a value passed to another method raises.
  rule: spec_cascade and oracle_cascade (default "token_v3"), token_cascade
  ("chow", its only rule). alpha: the cascades, lossy, bild and seq_cascade
  (default 0.3; its range per rule or method: methods.ALPHA_RANGES).
  seq_confidence: seq_cascade ("mean", default, or "min"). ngram_size:
  prompt_lookup (default 3), which drafts num_draft_tokens tokens by matching
  the last ngram_size tokens in the output and the input (decoding/lookup.py;
  lossless, like "speculative").
  num_draft_tokens: tokens drafted per round, at most max_new_tokens (more
  raises); None: 5, or max_new_tokens where that is smaller. For token_cascade,
  num_draft_tokens + 1 is the verifier's catch-up chunk size; the methods that
  do not use it (methods.Method.uses_num_draft_tokens) ignore it.
  draft_policy: how many of its num_draft_tokens each row drafts in a round
  (the speculative kernel's methods; decoding/drafting.py): "constant" (the
  default: all of them), "confidence" (stop where the drafter's top
  probability falls below draft_threshold, default 0.4), "cumulative" (where
  the product of the draft's top probabilities does), "heuristic" (a per-row
  length that grows after fully accepted drafts and shrinks otherwise;
  draft_schedule=(start, grow, shrink), default (num_draft_tokens, 2, 1)).
  Every policy keeps each method's output law; draft_threshold and
  draft_schedule are traced (scalars or per row), the policy is static.
  top_k: at most the vocabulary size (0 disables it).
  A wrong setting raises UsageError (a ValueError) before anything is compiled.
  pad_single_row: decode a one-row batch as two copies of the row and return
  the first; None (default) does so on GPU backends only. With one row,
  XLA:GPU emits each projection of a one-token step as a reduction:
  BENCHMARKS.md measured 1.57 ms per T5-large step on an H200, against 0.94 ms
  for 8 rows and 1.04 ms for a 6-token chunk (GEMMs). Tokens and stats are
  unchanged: rows decode independently, each with its own random stream.

  Decoder-only LMs (models/lm/model.py) continue each prompt; two settings serve
  families whose token ids differ from T5's (models/protocol.py):
  eos_id: an int or a sequence of ints (static) that end a row; None (default)
  takes the models' own `eos_id` attribute (1 where a model has none, as T5),
  and raises if drafter and verifier disagree.
  input_lengths: [B] ints, row b's prompt being input_ids[b, :input_lengths[b]]
  (right padding of any value after it); for Llama 3 and Qwen 2.5, whose token
  0 is a real token. None (default): each model's own pad convention (T5 and
  Gemma: 0 pads; a model without a pad id reads every row as unpadded).
  """
  return _generate(jitted_decode, drafter, verifier, input_ids, pad_single_row,
                   input_lengths, method=method, rule=rule, alpha=alpha,
                   num_draft_tokens=num_draft_tokens, temperature=temperature, top_k=top_k,
                   top_p=top_p, max_new_tokens=max_new_tokens, rng=rng,
                   seq_confidence=seq_confidence, ngram_size=ngram_size,
                   draft_policy=draft_policy, draft_threshold=draft_threshold,
                   draft_schedule=draft_schedule, eos_id=eos_id)


def _generate(decode_fn, drafter, verifier, input_ids, pad_single_row, input_lengths,
              **prepare_kwargs) -> GenerateResult:
  """`generate`'s work with `decode_fn`, a jit of `decode` (jitted_decode)."""
  if pad_single_row is not None and not isinstance(pad_single_row, bool):
    raise UsageError(f"pad_single_row must be True, False or None (automatic: on GPU "
                     f"only); got {pad_single_row!r}.")
  drafter, verifier, params, rng, statics = prepare(
      drafter, verifier, input_ids, **prepare_kwargs)
  lengths = None if input_lengths is None else _check_input_lengths(input_lengths,
                                                                    input_ids)
  # Host (numpy) arguments go to the compiled call as they are: its dispatch
  # moves them to the device in one batch, where a jnp.asarray per argument
  # dispatched one transfer each (BENCHMARKS.md, "Where the time goes").
  xp = jnp if isinstance(input_ids, jax.Array) else np
  ids = xp.asarray(input_ids, np.int32)
  if pad_single_row is None:
    pad_single_row = jax.default_backend() == "gpu"
  pad = pad_single_row and ids.shape[0] == 1
  if pad:
    ids = xp.concatenate([ids, ids])
    params = jax.tree.map(lambda a: np.concatenate([a, a]), params)
    lengths = None if lengths is None else np.concatenate([lengths, lengths])
  tokens, stats = decode_fn(drafter, verifier, ids, params, rng, input_lengths=lengths,
                            **statics)
  if pad:
    tokens, stats = tokens[:1], {k: v[:1] for k, v in stats.items()}
  tokens, stats = jax.device_get((tokens, stats))
  return GenerateResult(tokens=np.asarray(tokens, np.int32),
                        stats={k: np.asarray(v, np.int32) for k, v in stats.items()})


# generate()'s defaults, read from its signature (their one place): the
# sharded entry point and the main job take theirs from here.
GENERATE_DEFAULTS = types.MappingProxyType({
    name: p.default for name, p in inspect.signature(generate).parameters.items()
    if p.default is not inspect.Parameter.empty})
