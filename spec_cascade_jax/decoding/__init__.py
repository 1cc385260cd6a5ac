"""Decoding: targets and rules, sampling, the speculative kernel, baselines, `generate`."""

from spec_cascade_jax.decoding.api import METHODS, GenerateResult, generate
from spec_cascade_jax.decoding.targets import ALPHA_RANGES, RULES

__all__ = ["ALPHA_RANGES", "GenerateResult", "METHODS", "RULES", "generate"]
