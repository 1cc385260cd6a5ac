"""Which output tokens came from the drafter: decodes with provenance marks.

The kernel returns tokens and per-row counts, not per-token sources, and it
stays that way (no extra outputs in the hot loop). Provenance is recomputed
afterwards by teacher forcing: one drafter forward over the committed output
gives the drafter's greedy token at every position given the SAME prefix.

    marks = drafter_agreement(drafter, input_ids, res.tokens)
    print(render_text(vocab, res.tokens[0], marks.agree[0]))

What a mark means. At temperature 0 a speculative round commits accepted
drafts (each equal to the drafter's greedy token, so marked "drafter") and then
one verifier token (the residual after a rejection, or the bonus token after
γ acceptances). A verifier token that differs from the drafter's choice is a
*correction* (marked). A verifier token that happens to equal the drafter's
choice is marked "drafter": from the output alone the two are
indistinguishable, and either way the drafter's guess survived. At
temperature > 0 the marks say "equals the drafter's most likely token".
The interface is the README main job's companion: `configs/demo.gin` runs the
sweep (evaluation/sweep.py); the notebook uses this module to show decodes.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Provenance:
  """agree: [B, T] bool, token == the drafter's greedy token given the prefix;
  valid: [B, T] bool, position is part of the output (up to and with EOS)."""
  agree: np.ndarray
  valid: np.ndarray

  @property
  def correction_rate(self) -> float:
    """Share of output tokens where the drafter's greedy choice was overruled."""
    n = int(self.valid.sum())
    return float(((~self.agree) & self.valid).sum() / n) if n else 0.0


def output_mask(tokens: np.ndarray) -> np.ndarray:
  """[B, T] bool: positions up to and including the first EOS (id 1)."""
  tokens = np.asarray(tokens)
  is_eos = tokens == 1
  after = np.cumsum(is_eos, axis=1) - is_eos  # EOS seen strictly before this position
  return (after == 0) & (tokens != 0)


def drafter_agreement(drafter, input_ids, tokens) -> Provenance:
  """Teacher-forced drafter argmax vs the committed tokens.

  drafter: a model with `logits(input_ids [B, S], decoder_input_ids [B, T])`
  -> [B, T, V] (T5Model); input_ids [B, S] int32; tokens [B, T] int32 as
  returned by `generate` (EOS included, 0 after it).
  """
  import jax.numpy as jnp
  tokens = np.asarray(tokens, np.int32)
  if tokens.ndim != 2:
    raise ValueError(f"tokens must be [B, T] as returned by generate; got {tokens.shape}")
  # Decoder input = start token 0, then the output shifted right by one.
  dec_in = np.concatenate([np.zeros((tokens.shape[0], 1), np.int32), tokens[:, :-1]], 1)
  logits = drafter.logits(jnp.asarray(input_ids, jnp.int32), jnp.asarray(dec_in))
  greedy = np.asarray(jnp.argmax(logits, axis=-1))              # [B, T]
  return Provenance(agree=greedy == tokens, valid=output_mask(tokens))


def _pieces(vocab, ids: Sequence[int]) -> list[str]:
  sp = getattr(vocab, "tokenizer", None)
  out = []
  for i in ids:
    if sp is not None and i < sp.GetPieceSize():
      out.append(sp.IdToPiece(int(i)).replace("\u2581", " "))
    else:
      out.append(vocab.decode([int(i)]))
  return out


def _visible(tokens, agree) -> tuple[list[int], list[bool]]:
  tokens = [int(t) for t in tokens]
  mask = output_mask(np.asarray([tokens]))[0]
  keep = [(t, bool(a)) for t, a, m in zip(tokens, agree, mask) if m and t != 1]
  return [t for t, _ in keep], [a for _, a in keep]


def render_text(vocab, tokens: Sequence[int], agree: Sequence[bool]) -> str:
  """Plain text; verifier corrections in [brackets]."""
  ids, marks = _visible(tokens, agree)
  return "".join(p if a else f"[{p}]" for p, a in zip(_pieces(vocab, ids), marks)).strip()


def render_html(vocab, tokens: Sequence[int], agree: Sequence[bool]) -> str:
  """HTML spans: drafter tokens green, verifier corrections red and bold."""
  ids, marks = _visible(tokens, agree)
  spans = []
  for piece, a in zip(_pieces(vocab, ids), marks):
    style = ("background:#d4f7d4" if a else
             "background:#ffd0d0;font-weight:bold;text-decoration:underline")
    spans.append(f'<span style="{style}">{html.escape(piece)}</span>')
  return "".join(spans)


LEGEND_HTML = ('<span style="background:#d4f7d4">drafter token (kept)</span> '
               '<span style="background:#ffd0d0;font-weight:bold;text-decoration:underline">'
               'verifier correction</span>')
