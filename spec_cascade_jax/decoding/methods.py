"""Every decoding method and deferral rule, declared once (pure Python, no jax).

`generate` (api.py) validates and dispatches with this table; the sweep's
grids, cost statistics, summary and plots (evaluation/) and the benchmarks
read the same table, without importing jax. Adding a method is one entry
here plus its loop; docs/design.md §2 gives each method's law.

    methods.get("spec_cascade").takes_rule      # True
    methods.get("seq_cascade").takes("ngram_size")  # False: prompt_lookup's
    methods.taking("seq_confidence")            # ("seq_cascade",)
    methods.names()                             # declaration order
    [m.name for m in methods.METHODS.values() if not m.takes_alpha]
"""

from __future__ import annotations

import dataclasses

from spec_cascade_jax.decoding.errors import UsageError

RULES = ("chow", "diff", "opt", "token_v1", "token_v2", "token_v3")

_INF = float("inf")
# (low, high, high_inclusive): the meaningful range of α for each rule, and for
# the methods with an α of their own (targets.py's docstring says what the
# ends mean).
ALPHA_RANGES: dict[str, tuple[float, float, bool]] = {
    "chow": (0.0, 1.0, True),
    "diff": (-1.0, 1.0, True),
    "opt": (0.0, _INF, True),
    "token_v1": (0.0, 1.0, True),
    "token_v2": (0.0, 1.0, True),
    "token_v3": (0.0, 1.0, True),
    "lossy": (0.0, 1.0, False),
    "bild": (0.0, _INF, True),
    "seq_cascade": (0.0, 1.0, True),
}

# The loops a method can run in (api.decode dispatches on them).
LOOPS = ("kernel", "lookup", "single", "token_cascade", "oracle_cascade", "seq_cascade")

# generate()'s arguments that only some methods take (`Method.takes` says
# which): None means the method's default (`Method.default`); a value passed
# to a method that does not take it raises.
METHOD_ARGS = ("rule", "alpha", "seq_confidence", "ngram_size", "draft_policy",
               "draft_threshold", "draft_schedule")
SEQ_CONFIDENCES = ("mean", "min")
# How many of its γ tokens each row drafts in a round (decoding/drafting.py):
# the speculative kernel's methods take a policy; "constant" drafts all γ.
DRAFT_POLICIES = ("constant", "confidence", "cumulative", "heuristic")
# The policies that take each policy argument (a value given with another
# policy would be ignored: generate raises).
POLICY_ARGS = {"draft_threshold": ("confidence", "cumulative"),
               "draft_schedule": ("heuristic",)}


@dataclasses.dataclass(frozen=True)
class Method:
  """One decoding method.

  name: the `generate(method=...)` string.
  loop: "kernel" (kernel.spec_decode with the method's target), "lookup"
    (lookup.lookup_decode), "single" (one model, baselines.single_model), or
    the sequential baseline of baselines.py with the method's name.
  uses_drafter / uses_verifier: which models it needs.
  default_rule: the rule taken when `rule=None`; None for the methods that
    take no rule (`generate` rejects one passed to them).
  drafts: proposals are verified in rounds, so acceptance and rejection
    rates mean something (the speculative kernel's methods, prompt lookup).
  uses_num_draft_tokens: `num_draft_tokens` (γ) matters (a draft length, or
    token_cascade's chunk); where it does not, `generate` compiles one
    function for every γ.
  """
  name: str
  loop: str
  uses_drafter: bool = True
  uses_verifier: bool = True
  default_rule: str | None = None
  drafts: bool = False
  uses_num_draft_tokens: bool = True

  def __post_init__(self):
    if self.loop not in LOOPS:
      raise ValueError(f"method {self.name!r}: loop {self.loop!r} is not one of {LOOPS}.")
    if self.default_rule is not None and self.default_rule not in RULES:
      raise ValueError(f"method {self.name!r}: default_rule {self.default_rule!r} is not "
                       f"one of {RULES}.")

  @property
  def takes_rule(self) -> bool:
    return self.default_rule is not None

  @property
  def takes_alpha(self) -> bool:
    """The rule methods and the methods with an α range of their own."""
    return self.takes_rule or self.name in ALPHA_RANGES

  def takes(self, arg: str) -> bool:
    """Whether `generate(method=self.name)` accepts `arg` (one of METHOD_ARGS):
    seq_confidence is seq_cascade's, ngram_size prompt lookup's."""
    if arg in ("draft_policy", *POLICY_ARGS):
      return self.loop == "kernel"
    return {"rule": self.takes_rule, "alpha": self.takes_alpha,
            "seq_confidence": self.loop == "seq_cascade",
            "ngram_size": self.loop == "lookup"}[arg]

  def default(self, arg: str):
    """The value `generate` uses for `arg` (one the method takes) given None
    (None for the policy arguments: their policy's default, `policy_default`)."""
    return {"rule": self.default_rule, "alpha": DEFAULT_ALPHA,
            "seq_confidence": DEFAULT_SEQ_CONFIDENCE, "ngram_size": DEFAULT_NGRAM_SIZE,
            "draft_policy": DEFAULT_DRAFT_POLICY, "draft_threshold": None,
            "draft_schedule": None}[arg]


# generate()'s defaults, used by every entry point (the sweep's points, the
# main job's infer/evaluate, the sharded call).
DEFAULT_METHOD = "spec_cascade"
DEFAULT_RULE = "token_v3"
DEFAULT_ALPHA = 0.3
DEFAULT_NUM_DRAFT_TOKENS = 5   # capped at max_new_tokens where generate gets None
DEFAULT_NGRAM_SIZE = 3
DEFAULT_SEQ_CONFIDENCE = "mean"
DEFAULT_DRAFT_POLICY = "constant"
# "confidence": stop drafting where the drafter's top probability falls below
# this (transformers' assistant_confidence_threshold default).
DEFAULT_DRAFT_THRESHOLD = 0.4
# "heuristic": grow the draft length by 2 after a fully accepted draft, shrink
# it by 1 otherwise (transformers' schedule); it starts at γ.
DEFAULT_DRAFT_GROW, DEFAULT_DRAFT_SHRINK = 2, 1


def policy_default(arg: str, num_draft_tokens: int):
  """The value of a policy argument (POLICY_ARGS) given None, for draft length γ."""
  if arg == "draft_threshold":
    return DEFAULT_DRAFT_THRESHOLD
  return (num_draft_tokens, DEFAULT_DRAFT_GROW, DEFAULT_DRAFT_SHRINK)

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("drafter", "single", uses_verifier=False, uses_num_draft_tokens=False),
    Method("verifier", "single", uses_drafter=False, uses_num_draft_tokens=False),
    Method("speculative", "kernel", drafts=True),
    Method("lossy", "kernel", drafts=True),
    Method("spec_cascade", "kernel", default_rule=DEFAULT_RULE, drafts=True),
    # Calls the verifier only where the rule defers, so the rule may read q
    # alone: chow is its one rule.
    Method("token_cascade", "token_cascade", default_rule="chow"),
    Method("oracle_cascade", "oracle_cascade", default_rule=DEFAULT_RULE,
           uses_num_draft_tokens=False),
    Method("seq_cascade", "seq_cascade", uses_num_draft_tokens=False),
    Method("bild", "kernel", drafts=True),
    Method("prompt_lookup", "lookup", uses_drafter=False, drafts=True),
)}


def names() -> tuple[str, ...]:
  """Every method name, in declaration order (`generate`'s METHODS)."""
  return tuple(METHODS)


def get(name: str) -> Method:
  """The method called `name`; an unknown name raises, listing the valid ones."""
  if name not in METHODS:
    raise UsageError(f"Unknown method {name!r}; valid methods: {names()}.")
  return METHODS[name]


def taking(arg: str) -> tuple[str, ...]:
  """The methods that take `arg` (one of METHOD_ARGS), in declaration order."""
  return tuple(n for n, m in METHODS.items() if m.takes(arg))


def without_alpha() -> tuple[str, ...]:
  """The methods that take no α (a sweep runs them once)."""
  return tuple(n for n, m in METHODS.items() if not m.takes_alpha)


def drafting() -> tuple[str, ...]:
  """The methods whose drafts are verified in rounds (acceptance is reported)."""
  return tuple(n for n, m in METHODS.items() if m.drafts)
