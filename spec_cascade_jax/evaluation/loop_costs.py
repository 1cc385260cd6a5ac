"""The decode loops' own work: what a decode costs beyond its model calls.

The cost model (evaluation/cost_model.py) prices model calls measured apart
(evaluation/step_costs.py). A decode does more: the call itself (validation,
dispatch, the results back to the host) and, every iteration of its loop,
the distributions over the vocabulary, the draws, the acceptance test, the
correction, the commit and the counters. This module measures that work by
decoding *free models* (`FreeModel`): models with the real vocabulary size
and EOS whose calls cost next to nothing, so that a free decode's time is
the loop's own.

`programs` builds, for each side of a paired timing (the point's method and
verifier-only decoding), two free decodes with that side's `generate`
settings: one whose models emit EOS at once (one iteration) and one that
runs to max_new_tokens. Their times give `LoopCost(fixed, per_iteration)`:
per_iteration = (long − short) / (their iterations' difference), fixed the
rest of the short decode. An iteration is what `cost_model.loop_iterations`
counts: a round of the speculative kernel or of prompt lookup, a token of the
one-token loops. α, temperature and the draft threshold are traced, so every
point of one (method, rule, draft policy) shares one compilation.

Free drafter and verifier agree at every position, so each round accepts its
whole draft (up to a draft policy's stop); the loop's work per round does
not depend on how much of the draft is accepted (the kernel's round is
branch-free but for its all-greedy shortcut, decoding/drafting.py).

benchmarks/kernel_overhead.py times the free decodes of several methods and
vocabulary sizes side by side.
"""

from __future__ import annotations

from typing import Callable, Hashable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.evaluation.cost_model import LoopCost, loop_iterations

# Input length of the free decodes: a free model reads no input, so any
# length times the same loop.
FREE_INPUT_LENGTH = 16
# The key of `programs`' first free decode: timed among the others, never priced.
WARM_UP = ("warm-up",)
# Leading logit of a free model's rows (the others are N(0, 1)): its top
# probability stays well inside (0, 1), so a draft policy's threshold cuts
# drafts as it would on a real model's.
TOP_LOGIT = 10.0


@flax.struct.dataclass
class FreeModel:
  """A decoder whose step costs next to nothing (models/protocol.py).

  Its logits at a position are one of four fixed rows, picked by the token
  fed there, whose argmax is never EOS; from generated token `stop` on they
  are `eos_logits`, whose argmax is EOS. Its cache is one int per row.
  `stop` is a leaf (traced): decodes that stop at different positions share
  a compilation."""
  logits: jax.Array       # [4, V] float32
  eos_logits: jax.Array   # [V] float32
  stop: jax.Array         # [] int32
  eos_id: int | tuple[int, ...] = flax.struct.field(pytree_node=False, default=1)

  @property
  def vocab_size(self) -> int:
    return int(self.logits.shape[-1])

  def init_cache(self, input_ids, max_length: int, input_lengths=None):
    return {"unused": jnp.zeros((input_ids.shape[0], 1), jnp.int32)}

  def step(self, tokens, cache, positions):
    # Logits at decoder position p + i predict generated token p + i.
    out = positions[:, None] + jnp.arange(tokens.shape[1])[None, :]
    logits = jnp.where((out >= self.stop)[..., None], self.eos_logits,
                       self.logits[tokens % 4])
    return logits, cache


def free_model(vocab_size: int, eos_id: int | tuple[int, ...] = 1, stop: int | None = None,
               seed: int = 0) -> FreeModel:
  """A FreeModel over `vocab_size` tokens whose rows end with generated token
  `stop` (0: at once; None: never), at the first of `eos_id` (an int or a tuple, as a
  model's own `eos_id`). The four rows' argmaxes are tokens other than pad 0
  and the EOS ids, so no free row ends early."""
  eos = (eos_id,) if isinstance(eos_id, int) else tuple(eos_id)
  if not eos:
    raise ValueError("a free model ends its rows at an EOS id; got none.")
  top = [t for t in range(1, vocab_size) if t not in eos][:4]
  if len(top) < 4 or not all(0 <= e < vocab_size for e in eos):
    raise ValueError(f"a free model needs four tokens besides pad 0 and EOS {list(eos)} in "
                     f"its vocabulary of {vocab_size}.")
  rs = np.random.RandomState(seed)
  logits = rs.randn(4, vocab_size).astype(np.float32)
  logits[np.arange(4), top] = TOP_LOGIT
  eos_logits = rs.randn(vocab_size).astype(np.float32)
  eos_logits[eos[0]] = TOP_LOGIT
  never = np.iinfo(np.int32).max
  return FreeModel(jnp.asarray(logits), jnp.asarray(eos_logits),
                   jnp.asarray(never if stop is None else stop, jnp.int32), eos_id=eos_id)


def programs(sides: Mapping[Hashable, tuple[str, dict]], like, seed: int = 0
             ) -> tuple[dict[Hashable, Callable[[], object]],
                        Callable[[Mapping[Hashable, float]], dict[Hashable, LoopCost]]]:
  """The free decodes that price each side's loop, and how their times make
  LoopCosts (module docstring).

  sides: {side: (models, generate kwargs)}, models "both" (drafter and
  verifier free) or "verifier" (verifier-only), kwargs as the side's real
  decodes take them (method, rule, alpha, temperature, max_new_tokens, ...).
  Returns (fns, costs): fns {(side, "short" | "long"): callable that decodes
  and blocks}, each run once here (compiled, and its iterations counted),
  led by a WARM_UP call whose time costs ignores: a free decode right after
  a real model's program ran ~0.3 ms slower on this CPU (its caches hold the
  other program's data), which would charge the first side alone;
  costs({key: seconds}) -> {side: LoopCost}. A caller times fns among its own
  calls (evaluation/infer.py `PointTimer`). like: the real model whose
  vocabulary size and EOS ids the free models take."""
  from spec_cascade_jax.decoding.api import generate, model_eos_ids
  vocab_size, eos_id = like.vocab_size, model_eos_ids(like)
  ids = np.full((1, FREE_INPUT_LENGTH), 5, np.int32)
  rng = jax.random.PRNGKey(seed)
  if not sides:
    raise ValueError("no sides to price: pass {side: (models, generate kwargs)}.")
  fns, iterations = {}, {}
  for side, (models, kw) in sides.items():
    if models not in ("both", "verifier"):
      raise ValueError(f"side {side!r}: models is 'both' or 'verifier'; got {models!r}.")
    for length, stop in (("short", 0), ("long", None)):
      free = free_model(vocab_size, eos_id, stop, seed)
      pair = (free, free) if models == "both" else (None, free)
      fn = (lambda pair=pair, kw=kw: generate(*pair, ids, rng=rng, **kw))
      stats = fn().stats
      fns[(side, length)] = fn
      iterations[(side, length)] = float(loop_iterations(kw["method"], stats).sum())
    short, long = iterations[(side, "short")], iterations[(side, "long")]
    if long < short:
      raise RuntimeError(f"side {side!r}: the free decode to max_new_tokens made "
                         f"{long:g} loop iterations, the one ending at once {short:g}; "
                         "a free model emitted EOS early?")

  fns = {WARM_UP: fns[(next(iter(sides)), "short")], **fns}

  def costs(seconds: Mapping[Hashable, float]) -> dict[Hashable, LoopCost]:
    out = {}
    for side in sides:
      short, long = (seconds[(side, n)] for n in ("short", "long"))
      i_short, i_long = iterations[(side, "short")], iterations[(side, "long")]
      # max_new_tokens within one round: both decodes make one iteration, and
      # the short one's time is all fixed cost.
      per = max(long - short, 0.0) / (i_long - i_short) if i_long > i_short else 0.0
      out[side] = LoopCost(fixed=max(short - i_short * per, 0.0), per_iteration=per)
    return out

  return fns, costs
