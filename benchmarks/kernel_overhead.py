"""Loop overhead of the speculative kernel: a round versus the model calls in it.

For a toy bigram pair and a tiny T5 pair at batch 1, prints
  - the kernel's time per round (greedy speculative decoding, compile excluded,
    median of repeats, divided by the rounds it ran);
  - the time of the model calls one round makes: γ+1 one-token drafter steps
    plus one verifier chunk of γ+1, each timed jitted with the same shapes
    inside a `fori_loop` (so Python dispatch is not counted in either);
  - the encoders' one-off cost is subtracted from the kernel's time;
  - overhead = (round − model calls) / round: sampling, targets, acceptance,
    commit and the while_loop itself. Target: < 10% with a 6-layer verifier.
EOS is masked out of both models so every run decodes max_new_tokens tokens.

    python benchmarks/kernel_overhead.py --num-draft-tokens 5 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from spec_cascade_jax.decoding import generate
from spec_cascade_jax.models.t5 import PRESETS
from spec_cascade_jax.testing import NoEos, random_bigram


def _median_time(fn, repeats):
  fn()  # compile / warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _step_time(model, input_ids, chunk: int, cache_len: int, inner: int, repeats: int):
  """(seconds per model.step on [1, chunk] tokens, seconds of init_cache/encoding).

  Jitted, dispatch excluded: `inner` steps in one fori_loop, minus the encoding.
  """

  @jax.jit
  def loop(model, input_ids):
    cache = model.init_cache(input_ids, cache_len)

    def body(i, carry):
      cache, tok = carry
      tokens = jnp.broadcast_to(tok[:, None], (tok.shape[0], chunk))
      logits, cache = model.step(tokens, cache, jnp.full(tok.shape, i % 8, jnp.int32))
      return cache, jnp.argmax(logits[:, -1], -1).astype(jnp.int32)  # a data dependency

    return jax.lax.fori_loop(0, inner, body, (cache, input_ids[:, 0]))[1]

  def encode_only(model, input_ids):
    return jax.tree.leaves(model.init_cache(input_ids, cache_len))[0]

  enc = jax.jit(encode_only)
  t_all = _median_time(lambda: loop(model, input_ids).block_until_ready(), repeats)
  t_enc = _median_time(lambda: enc(model, input_ids).block_until_ready(), repeats)
  return max(t_all - t_enc, 0.0) / inner, t_enc


def _model_loop_time(drafter, verifier, input_ids, gamma: int, cache_len: int,
                     rounds: int, repeats: int):
  """Seconds per round of ONLY the model calls, in the kernel's loop skeleton.

  A fori_loop of `rounds` rounds, each a lax.scan of γ+1 drafter steps (argmax
  feeding) and one verifier chunk: what the kernel does minus sampling,
  targets, acceptance and commit. Encoding is subtracted.
  """
  span = cache_len - gamma - 1

  @jax.jit
  def loop(drafter, verifier, input_ids):
    caches = (drafter.init_cache(input_ids, cache_len), verifier.init_cache(input_ids, cache_len))

    def body(i, carry):
      dcache, vcache, tok = carry
      pos = jnp.full(tok.shape, (i * (gamma + 1)) % span, jnp.int32)

      def draft(c, j):
        dcache, t = c
        logits, dcache = drafter.step(t[:, None], dcache, pos + j)
        t = jnp.argmax(logits[:, 0], -1).astype(jnp.int32)
        return (dcache, t), t

      (dcache, _), xs = jax.lax.scan(draft, (dcache, tok), jnp.arange(gamma + 1))
      chunk = jnp.concatenate([tok[:, None], xs.T[:, :gamma]], axis=1)   # [B, γ+1]
      logits, vcache = verifier.step(chunk, vcache, pos)
      return dcache, vcache, jnp.argmax(logits[:, -1], -1).astype(jnp.int32)

    return jax.lax.fori_loop(0, rounds, body, caches + (input_ids[:, 0],))[2]

  @jax.jit
  def encode(drafter, verifier, input_ids):
    return (jax.tree.leaves(drafter.init_cache(input_ids, cache_len))[0],
            jax.tree.leaves(verifier.init_cache(input_ids, cache_len))[0])

  t_all = _median_time(lambda: jax.block_until_ready(loop(drafter, verifier, input_ids)),
                       repeats)
  t_enc = _median_time(lambda: jax.block_until_ready(encode(drafter, verifier, input_ids)),
                       repeats)
  return max(t_all - t_enc, 0.0) / rounds


def measure(name, drafter, verifier, input_ids, args):
  gamma, max_new = args.num_draft_tokens, args.max_new_tokens
  drafter, verifier = NoEos(drafter), NoEos(verifier)
  kw = dict(num_draft_tokens=gamma, max_new_tokens=max_new, temperature=0.0)
  res = generate(drafter, verifier, input_ids, method="speculative", **kw)
  rounds = int(res.stats["rounds"][0])
  t_spec = _median_time(lambda: generate(drafter, verifier, input_ids,
                                         method="speculative", **kw), args.repeats)
  t_ver = _median_time(lambda: generate(None, verifier, input_ids, method="verifier",
                                        **kw), args.repeats)
  cache_len = max_new + gamma + 1
  t_d, enc_d = _step_time(drafter, input_ids, 1, cache_len, args.inner, args.repeats)
  t_v, enc_v = _step_time(verifier, input_ids, gamma + 1, cache_len, args.inner, args.repeats)
  t_v1, _ = _step_time(verifier, input_ids, 1, max_new + 1, args.inner, args.repeats)
  # Encoding happens once per call, not per round: take it out of both sides.
  t_spec -= enc_d + enc_v
  t_ver -= enc_v
  per_round = t_spec / rounds
  models = (gamma + 1) * t_d + t_v
  in_loop = _model_loop_time(drafter, verifier, input_ids, gamma, cache_len, rounds,
                             args.repeats)
  return dict(name=name, rounds=rounds, per_round=per_round, models=models,
              drafter=t_d, verifier=t_v, overhead=(per_round - models) / per_round,
              in_loop=in_loop, logic=(per_round - in_loop) / per_round,
              ver_token=t_ver / max_new, ver_overhead=(t_ver / max_new - t_v1) / (t_ver / max_new))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--num-draft-tokens", type=int, default=5, help="γ")
  ap.add_argument("--max-new-tokens", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--inner", type=int, default=64, help="model calls per timed loop")
  ap.add_argument("--bigram-vocab", type=int, default=64)
  ap.add_argument("--vocab", type=int, default=512)
  ap.add_argument("--d-model", type=int, default=256)
  ap.add_argument("--verifier-layers", type=int, default=6)
  ap.add_argument("--drafter-layers", type=int, default=2)
  ap.add_argument("--input-length", type=int, default=16)
  args = ap.parse_args(argv)

  from spec_cascade_jax.models.t5 import T5Model
  rows = []
  ids = jnp.full((1, args.input_length), 5, jnp.int32)
  rows.append(measure(f"bigram V={args.bigram_vocab}",
                      random_bigram(jax.random.PRNGKey(1), args.bigram_vocab),
                      random_bigram(jax.random.PRNGKey(2), args.bigram_vocab), ids, args))
  base = PRESETS["t5-small"].replace(vocab_size=args.vocab, d_model=args.d_model,
                                     d_kv=args.d_model // 4, d_ff=4 * args.d_model,
                                     num_heads=4)
  verifier = T5Model.init(base.replace(num_layers=args.verifier_layers), jax.random.PRNGKey(3))
  drafter = T5Model.init(base.replace(num_layers=args.drafter_layers), jax.random.PRNGKey(4))
  rows.append(measure(f"T5 {args.drafter_layers}L->{args.verifier_layers}L d={args.d_model}",
                      drafter, verifier, ids, args))

  print(f"device={jax.devices()[0].device_kind} batch=1 "
        f"num_draft_tokens={args.num_draft_tokens} max_new_tokens={args.max_new_tokens} "
        "(times in microseconds)")
  head = (f"{'pair':<22}{'rounds':>7}{'round':>10}{'models':>10}{'drafter':>9}"
          f"{'verif':>9}{'overhead':>10}{'in-loop':>9}{'logic':>8}{'AR/token':>10}"
          f"{'AR ovh':>8}")
  print(head)
  print("-" * len(head))
  for r in rows:
    print(f"{r['name']:<22}{r['rounds']:>7}{r['per_round'] * 1e6:>10.1f}"
          f"{r['models'] * 1e6:>10.1f}{r['drafter'] * 1e6:>9.1f}{r['verifier'] * 1e6:>9.1f}"
          f"{100 * r['overhead']:>9.1f}%{r['in_loop'] * 1e6:>9.1f}{100 * r['logic']:>7.1f}%"
          f"{r['ver_token'] * 1e6:>10.1f}"
          f"{100 * r['ver_overhead']:>7.1f}%")
  print("round = kernel time / rounds; models = (γ+1)·drafter step + verifier chunk,\n"
        "timed separately; overhead = (round - models) / round. in-loop = the same model\n"
        "calls in the kernel's loop skeleton (scan in a loop) without sampling, targets,\n"
        "acceptance or commit; logic = (round - in-loop) / round: the kernel's own math.\n"
        "AR = verifier-only decoding per token and its overhead over one verifier step.")


if __name__ == "__main__":
  main()
