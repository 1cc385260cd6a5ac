"""The methods and α grids of a trade-off sweep (the paper's Figure 2 curves).

A *curve* is one method (and rule) traced over α; a *point* is one decoding
setting on it. Curve names follow the paper:

    SeqCascade[chow]   TokenCascade[chow]   LossySD   BiLD*
    SpecCascade[chow|diff|opt|token_v1|token_v2|token_v3]
    SpecDecode         Drafter              Verifier

    points = grids.build_points(grids.GRIDS["demo"], num_draft_tokens=5)

α runs from "mostly verifier" to "mostly drafter" along each grid (the meaning
of α per rule: decoding/targets.py). Speculative decoding, the drafter and the
verifier have no α: one point each (per temperature and seed).

A curve of a speculative method may also set a draft policy
(decoding/drafting.py); a curve of a threshold policy ("confidence",
"cumulative") crosses its thresholds with its α, so the sweep chooses the
draft length and α jointly: the summary's row of the curve is its fastest
(threshold, α) point at the verifier's quality.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping, Sequence

from spec_cascade_jax.decoding import methods


@dataclasses.dataclass(frozen=True)
class Curve:
  """One method (and rule) swept over `alphas` (× `draft_thresholds` for a
  threshold draft policy, THRESHOLD_POLICIES; "" is the constant policy)."""
  name: str
  method: str
  rule: str = ""
  alphas: tuple[float, ...] = (0.0,)
  draft_policy: str = ""
  draft_thresholds: tuple[float, ...] = ()

  def __post_init__(self):
    if self.draft_policy and self.draft_policy not in methods.DRAFT_POLICIES:
      raise ValueError(f"curve {self.name!r}: draft_policy {self.draft_policy!r} is not one "
                       f"of {methods.DRAFT_POLICIES}.")
    if self.draft_policy and not methods.get(self.method).takes("draft_policy"):
      raise ValueError(f"curve {self.name!r}: method {self.method!r} takes no draft policy; "
                       f"use one of {methods.taking('draft_policy')}.")
    if bool(self.draft_thresholds) != (self.draft_policy in THRESHOLD_POLICIES):
      raise ValueError(f"curve {self.name!r}: draft_thresholds go with the draft policies "
                       f"{THRESHOLD_POLICIES}, and they need at least one.")


@dataclasses.dataclass(frozen=True)
class Point:
  """One decoding setting of a sweep; `key` identifies it in a results file.

  seed only matters at temperature > 0 (greedy decoding has no randomness).
  draft_policy "" is the constant policy; draft_threshold is the threshold
  policies' (THRESHOLD_POLICIES).
  """
  curve: str
  method: str
  rule: str = ""
  alpha: float = 0.0
  num_draft_tokens: int = methods.DEFAULT_NUM_DRAFT_TOKENS
  temperature: float = 0.0
  seed: int = 0
  draft_policy: str = ""
  draft_threshold: float = 0.0

  @property
  def key(self) -> str:
    """Canonical JSON of every field: equal settings give equal keys. The
    draft fields are left out at their defaults, so results files written
    before draft policies existed resume with the same keys."""
    d = dataclasses.asdict(self)
    d["alpha"] = float(round(d["alpha"], 10))   # 0.30000000000000004 -> 0.3
    d["temperature"] = float(round(d["temperature"], 10))
    d["draft_threshold"] = float(round(d["draft_threshold"], 10))
    for name in ("draft_policy", "draft_threshold"):
      if not d[name]:
        del d[name]
    return json.dumps(d, sort_keys=True)

  @property
  def label(self) -> str:
    has_alpha = self.method not in NO_ALPHA_METHODS
    out = self.curve + (f" α={self.alpha:g}" if has_alpha else "")
    if self.draft_policy in THRESHOLD_POLICIES:
      out += f" τ={self.draft_threshold:g}"
    return out + (f" T={self.temperature:g} seed={self.seed}" if self.temperature > 0 else "")

  @classmethod
  def from_dict(cls, d: Mapping) -> "Point":
    return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


# From the one table of methods (decoding/methods.py, which imports no jax).
NO_ALPHA_METHODS = methods.without_alpha()
THRESHOLD_POLICIES = methods.POLICY_ARGS["draft_threshold"]
SPECULATIVE_METHODS = methods.drafting()

_UNIT = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_TOKEN = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def _spec(rule: str, alphas) -> Curve:
  return Curve(f"SpecCascade[{rule}]", "spec_cascade", rule, tuple(alphas))


# Every method of the paper's Figure 2 / Table 2, α dense enough for curves.
PAPER = (
    Curve("Verifier", "verifier"),
    Curve("Drafter", "drafter"),
    Curve("SpecDecode", "speculative"),
    Curve("SeqCascade[chow]", "seq_cascade", "chow", _UNIT),
    Curve("TokenCascade[chow]", "token_cascade", "chow", _UNIT),
    Curve("LossySD", "lossy", "", (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)),
    Curve("BiLD*", "bild", "", (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)),
    _spec("chow", _UNIT),
    _spec("diff", (-0.3, -0.1, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)),
    _spec("opt", (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)),
    _spec("token_v1", _TOKEN),
    _spec("token_v2", _TOKEN),
    _spec("token_v3", _TOKEN),
    Curve("SpecDecode+confidence", "speculative", draft_policy="confidence",
          draft_thresholds=(0.2, 0.4, 0.6, 0.8)),
    Curve("SpecDecode+heuristic", "speculative", draft_policy="heuristic"),
    Curve("SpecCascade[token_v3]+confidence", "spec_cascade", "token_v3", _TOKEN,
          draft_policy="confidence", draft_thresholds=(0.3, 0.6)),
)

# The README's main job: every method but oracle_cascade (a per-token quality
# reference, slower than the verifier), 3 α each, and the draft policies: 39
# points, ~10 minutes on 2 CPU cores with the bundled pair. The α values span
# each rule from the verifier's BLEU towards the drafter's with the bundled
# pair (picked on the bundled verifier's earlier runs): chow reaches the
# verifier's BLEU at 0.2 (at 0.3 it stopped 0.1 short), and diff, opt and the
# token rules lose quality fast above 0.1. At temperature 0 lossy SD accepts
# exactly what lossless SD does (both distributions are one-hot), so it gets
# one point; its α matters only when sampling (--gin.TEMPERATURES).
DEMO = (
    Curve("Verifier", "verifier"),
    Curve("Drafter", "drafter"),
    Curve("SpecDecode", "speculative"),
    Curve("PromptLookup", "prompt_lookup"),   # lossless, no drafter (not in the paper)
    Curve("SeqCascade[chow]", "seq_cascade", "chow", (0.2, 0.5, 0.7)),
    Curve("TokenCascade[chow]", "token_cascade", "chow", (0.2, 0.5, 0.7)),
    Curve("LossySD", "lossy", "", (0.5,)),
    Curve("BiLD*", "bild", "", (0.5, 1.5, 3.0)),
    _spec("chow", (0.2, 0.5, 0.7)),
    _spec("diff", (-0.3, -0.1, 0.1)),
    _spec("opt", (0.0, 0.1, 0.5)),
    _spec("token_v1", (0.0, 0.02, 0.1)),
    _spec("token_v2", (0.01, 0.05, 0.2)),
    _spec("token_v3", (0.02, 0.1, 0.3)),
    # Draft policies (decoding/drafting.py): drafts stop where the drafter is
    # unsure (threshold τ on its top probability, or on their product over the
    # draft), or follow the per-row heuristic schedule; γ is then the longest
    # draft.
    Curve("SpecDecode+confidence", "speculative", draft_policy="confidence",
          draft_thresholds=(0.3, 0.6)),
    Curve("SpecDecode+cumulative", "speculative", draft_policy="cumulative",
          draft_thresholds=(0.05, 0.2)),
    Curve("SpecDecode+heuristic", "speculative", draft_policy="heuristic"),
    Curve("SpecCascade[token_v3]+confidence", "spec_cascade", "token_v3", (0.1,),
          draft_policy="confidence", draft_thresholds=(0.3, 0.6)),
)

# A few points of three curves: notebooks and tests.
SMALL = (
    Curve("Verifier", "verifier"),
    Curve("Drafter", "drafter"),
    Curve("SpecDecode", "speculative"),
    _spec("token_v3", (0.2, 0.6)),
)

GRIDS: dict[str, tuple[Curve, ...]] = {"paper": PAPER, "demo": DEMO, "small": SMALL}


def select_curves(grid: str | Sequence[Curve] = "paper",
                  curves: Sequence[str] | None = None,
                  alphas: Mapping[str, Sequence[float]] | None = None,
                  draft_thresholds: Mapping[str, Sequence[float]] | None = None
                  ) -> tuple[Curve, ...]:
  """A grid by name (or as Curves), optionally restricted to `curves` by name,
  with α lists replaced per curve name by `alphas`, and the thresholds of the
  "confidence" draft-policy curves by `draft_thresholds`. Verifier is always
  kept (every latency is relative to it)."""
  if isinstance(grid, str):
    if grid not in GRIDS:
      raise ValueError(f"unknown grid {grid!r}; choose one of {sorted(GRIDS)} "
                       "or pass a sequence of grids.Curve")
    grid = GRIDS[grid]
  by_name = {c.name: c for c in grid}
  if curves is not None:
    unknown = [c for c in curves if c not in by_name]
    if unknown:
      raise ValueError(f"unknown curve(s) {unknown}; this grid has {list(by_name)}")
    names = ["Verifier"] + [c for c in curves if c != "Verifier"]
    grid = tuple(by_name[n] for n in names if n in by_name)
  for what, given in (("alphas", alphas), ("draft_thresholds", draft_thresholds)):
    for name in given or {}:
      if name not in by_name:
        raise ValueError(f"{what} given for unknown curve {name!r}; curves: {list(by_name)}")
  for name in draft_thresholds or {}:
    if by_name[name].draft_policy not in THRESHOLD_POLICIES:
      raise ValueError(f"draft_thresholds given for {name!r}, which has no threshold draft "
                       f"policy {THRESHOLD_POLICIES}; the +confidence curves take them.")
  out = []
  for c in grid:
    if alphas and c.name in alphas:
      if c.method in NO_ALPHA_METHODS:
        raise ValueError(f"{c.name} has no α; remove it from `alphas`")
      c = dataclasses.replace(c, alphas=tuple(float(a) for a in alphas[c.name]))
    if draft_thresholds and c.name in draft_thresholds:
      c = dataclasses.replace(c, draft_thresholds=tuple(float(t) for t in
                                                        draft_thresholds[c.name]))
    out.append(c)
  if not any(c.method == "verifier" for c in out):
    raise ValueError("the grid has no Verifier curve: relative latency needs it")
  return tuple(out)


def build_points(curves: Sequence[Curve], num_draft_tokens: int = 5,
                 temperatures: Sequence[float] = (0.0,),
                 seeds: Sequence[int] = (0, 1, 2)) -> list[Point]:
  """All points: curve × α × temperature × (seed if temperature > 0).

  The Verifier comes first (it is the latency baseline and the quality line).
  """
  if not seeds:
    raise ValueError("seeds must not be empty (they are used when temperature > 0)")
  points = []
  for t in temperatures:
    if t < 0:
      raise ValueError(f"temperature must be >= 0; got {t}")
    for s in (seeds if t > 0 else (0,)):
      for c in sorted(curves, key=lambda c: c.method != "verifier"):
        for a in (c.alphas if c.method not in NO_ALPHA_METHODS else (0.0,)):
          for tau in (c.draft_thresholds or (0.0,)):
            points.append(Point(curve=c.name, method=c.method, rule=c.rule, alpha=float(a),
                                num_draft_tokens=int(num_draft_tokens),
                                temperature=float(t), seed=int(s),
                                draft_policy=c.draft_policy, draft_threshold=float(tau)))
  return points
