"""The decoder-only LM checks of the shared 8-device worker (tests/mesh_worker.py),
for tests/test_lm_partitioning.py.

    python tests/mesh_worker.py OUT_DIR lm          # main, with 8 fake devices

All five decoder-only LM families (models.lm.hf.SUPPORTED_MODEL_TYPES; tiny
configs: 4 query heads), each on a mesh chosen so that K/V heads are
replicated (parallel/lm_axes.py) on both meshes and split on (4, 2); none has
the 4 K/V heads that (2, 4) would split:

  llama        (data 2, model 4)  2 K/V heads, replicated; untied head,
                                  token 0 real, EOS far from 1
  gemma3_text  (2, 4)             2 K/V heads, replicated; q/k norms, a local
                                  (window 3) and a global layer
  gemma2       (4, 2)             2 K/V heads, split; sliding window 3,
                                  attention and final soft-capping
  qwen2        (4, 2)             2 K/V heads, split; q/k/v biases
  gemma        (4, 2)             1 K/V head (multi-query), replicated

All but llama tie the head to the embedding. Per family: greedy decoding on
ragged prompts (input_lengths, pads of nonzero junk) with an explicit eos_id,
unsharded and through `scj.generate(..., mesh=)`, by the family's methods:
both for llama (untied), speculative for qwen2 and gemma, spec_cascade for
gemma2 and gemma3_text. A family's features (attention variants, biases,
norms, K/V heads split or replicated) act in the model step, which both
methods call alike, and a method's logic after the logits is the same for
every family, so each method still runs on both meshes, with K/V heads split
and replicated, and with tied and untied heads;
parameter (q/k/v biases and q/k norms included) and cache shardings, with
the verifier's config for the test to derive its expectations from; the
sharded HF loader against whole loading then sharding, with every slice it
reads. Compiles dominate the cost (~10 s a family), so all of it runs in one
process. Results go to OUT_DIR (lm.npz, lm.json); a failed check raises
(mesh_worker.py then records its traceback for the tests to report).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

MAX_NEW = 8
GAMMA = 3
LENGTHS = (7, 3, 5, 1, 7, 6, 2, 4)
METHODS = (dict(method="speculative"),
           dict(method="spec_cascade", rule="token_v3", alpha=0.3))
# (model_type, mesh (data, model), init std, drafter noise, methods): weights
# drawn so that greedy outputs vary from token to token and drafts are partly
# accepted (a tied Gemma with large weights copies its input token forever,
# and so does Qwen2 at std 0.1; Gemma 1 at small std repeats a few tokens).
# The last method's compiled loop is the one whose HLO is checked.
FAMILIES = (("llama", (2, 4), 0.5, 0.15, ("speculative", "spec_cascade")),
            ("gemma2", (4, 2), 0.03, 0.1, ("spec_cascade",)),
            ("gemma", (4, 2), 0.3, 0.1, ("speculative",)),
            ("gemma3_text", (2, 4), 0.03, 0.1, ("spec_cascade",)),
            ("qwen2", (4, 2), 0.5, 0.1, ("speculative",)))


def _spec(x) -> list:
  """The array's PartitionSpec padded with None to its rank (see partitioning_worker)."""
  spec = [None if a is None else str(a) for a in x.sharding.spec]
  return spec + [None] * (x.ndim - len(spec))


def pair(model_type: str, init_std: float, noise: float):
  """(drafter, verifier): a 2-layer tiny LM and itself plus noise (drafts are
  sometimes accepted, sometimes not)."""
  import jax
  import jax.numpy as jnp
  from spec_cascade_jax.testing import tiny_lm_pair

  _, verifier = tiny_lm_pair(jax.random.PRNGKey(0), model_type, init_std=init_std)
  leaves, treedef = jax.tree.flatten(verifier.params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  noisy = [x + noise * jnp.std(x) * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return verifier.replace(params=jax.tree.unflatten(treedef, noisy)), verifier


def prompts(vocab: int) -> tuple[np.ndarray, np.ndarray]:
  """[8, 7] prompts right-padded with nonzero junk, and their lengths."""
  rs = np.random.RandomState(0)
  ids = rs.randint(2, vocab - 2, size=(len(LENGTHS), max(LENGTHS))).astype(np.int32)
  return ids, np.asarray(LENGTHS, np.int32)


def resplit_bf16(src: str, dst: str):
  """An HF directory re-saved as two shards with an index, every other tensor bfloat16."""
  import shutil
  import ml_dtypes
  from safetensors.numpy import load_file, save_file

  os.makedirs(dst, exist_ok=True)
  shutil.copy(os.path.join(src, "config.json"), dst)
  tensors = load_file(os.path.join(src, "model.safetensors"))
  names = sorted(tensors)
  weight_map = {}
  for i, name in enumerate(names):
    if i % 2:
      tensors[name] = tensors[name].astype(ml_dtypes.bfloat16)
    weight_map[name] = f"model-0000{1 + i % 2}-of-00002.safetensors"
  for shard in sorted(set(weight_map.values())):
    save_file({n: tensors[n] for n in names if weight_map[n] == shard},
              os.path.join(dst, shard), metadata={"format": "pt"})
  with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": weight_map}, f)


def run_family(model_type: str, shape, init_std: float, noise: float, methods, out_dir: str,
               results: dict, report: dict, timings: dict):
  import jax
  import jax.numpy as jnp
  import spec_cascade_jax as scj
  from jax.sharding import NamedSharding, PartitionSpec as P
  from spec_cascade_jax import parallel
  from spec_cascade_jax.models.lm import hf as hf_lm
  from spec_cascade_jax.parallel import hf_checkpoint

  drafter, verifier = pair(model_type, init_std, noise)
  ids, lengths = prompts(verifier.vocab_size)
  # EOS: the verifier's first greedy token for row 1, so that greedy
  # speculative decoding (lossless) ends row 1 after one token.
  first = jnp.argmax(verifier.logits(ids, jnp.zeros((8, 1), jnp.int32), lengths)[:, 0], -1)
  eos = int(first[1])
  report["eos"], report["first_tokens"] = eos, np.asarray(first).tolist()
  mesh = parallel.make_mesh(mesh_shape=shape)
  kw = dict(num_draft_tokens=GAMMA, max_new_tokens=MAX_NEW, eos_id=eos, input_lengths=lengths)
  family_methods = [m for m in METHODS if m["method"] in methods]
  for mkw in family_methods:
    name = mkw["method"]
    for label, extra in (("unsharded", {}), ("sharded", {"mesh": mesh})):
      t0 = time.time()
      res = scj.generate(drafter, verifier, ids, **kw, **mkw, **extra)
      timings[f"{model_type}/{name}/{label}"] = round(time.time() - t0, 1)
      print(model_type, name, label, timings[f"{model_type}/{name}/{label}"],
            file=sys.stderr, flush=True)
      results[f"{model_type}/{name}/{label}/tokens"] = res.tokens
      for k, v in res.stats.items():
        results[f"{model_type}/{name}/{label}/{k}"] = v

  # --- Parameters and caches as the rules say.
  sv = parallel.shard_model(verifier, mesh)
  p = sv.model.params
  att = p["layers_0"]["attention"]
  specs = {"token_embedder/embedding": _spec(p["token_embedder"]["embedding"]),
           "query/kernel": _spec(att["query"]["kernel"]),
           "key/kernel": _spec(att["key"]["kernel"]),
           "value/kernel": _spec(att["value"]["kernel"]),
           "out/kernel": _spec(att["out"]["kernel"]),
           "mlp/wi_0/kernel": _spec(p["layers_0"]["mlp"]["wi_0"]["kernel"]),
           "mlp/wo/kernel": _spec(p["layers_0"]["mlp"]["wo"]["kernel"]),
           "decoder_norm/scale": _spec(p["decoder_norm"]["scale"])}
  for name, sub in att.items():                    # q/k/v biases, q/k norms where present
    for leaf in ("bias", "scale"):
      if leaf in sub and f"{name}/{leaf}" not in specs:
        specs[f"{name}/{leaf}"] = _spec(sub[leaf])
  if "logits_dense" in p:
    specs["logits_dense/kernel"] = _spec(p["logits_dense"]["kernel"])
  report["param_specs"] = specs
  report["config"] = verifier.config.to_dict()
  report["sharded_eos_id"] = list(sv.eos_id)
  rows = NamedSharding(mesh, P("data"))
  ids_sh = jax.device_put(ids, NamedSharding(mesh, P("data", None)))
  len_sh = jax.device_put(lengths, rows)

  @jax.jit
  def cache_after_step(model, ids, lengths):
    cache = model.init_cache(ids, 16, lengths)
    _, cache = model.step(jnp.zeros((8, 2), jnp.int32), cache, jnp.zeros((8,), jnp.int32))
    return cache

  cache = cache_after_step(sv, ids_sh, len_sh)
  key = cache["layers"]["layers_1"]["key"]
  report["cache_specs"] = {"key": _spec(key), "offset": _spec(cache["offset"]),
                           "last_token": _spec(cache["last_token"])}
  report["cache_key_shard_shape"] = list(key.addressable_shards[0].data.shape)
  report["cache_key_shape"] = list(key.shape)
  np.testing.assert_array_equal(np.asarray(cache["offset"]), lengths - 1)

  # --- The compiled sharded loop holds per-device caches only, never gathered
  # (the last method's program: compiled above, so this is a cache hit).
  t0 = time.time()
  lowered, _ = parallel.lower_sharded_generate(drafter, verifier, ids, mesh=mesh, **kw,
                                               **family_methods[-1])
  hlo = lowered.compile().as_text()
  timings[f"{model_type}/hlo"] = round(time.time() - t0, 1)
  slots = ids.shape[1] - 1 + MAX_NEW + GAMMA + 1     # S - 1 + the kernel's max length
  kv, dh = verifier.config.num_kv_heads, verifier.config.head_dim
  local_kv = kv // mesh.shape["model"] if kv % mesh.shape["model"] == 0 else kv
  local = f"f32[{8 // mesh.shape['data']},{local_kv},{slots},{dh}]"
  whole = f"f32[8,{kv},{slots},{dh}]"
  report["hlo"] = {"local_cache": local in hlo, "global_cache": whole in hlo,
                   "all_gather_of_cache": any("all-gather" in line and whole in line
                                              for line in hlo.splitlines())}

  # --- Sharded HF loading: each device reads its own slices only.
  t0 = time.time()
  path = os.path.join(out_dir, f"hf-{model_type}")
  hf_lm.save_hf_lm(verifier, path)
  if model_type == "gemma2":
    resplit_bf16(path, path + "-sharded-bf16")
    path += "-sharded-bf16"
  reads = []
  orig = hf_checkpoint._read_st_block

  def recording(name, tensor, index):
    block = orig(name, tensor, index)
    reads.append({"name": name, "shape": list(tensor.get_shape()), "block": list(block.shape),
                  "index": [list(s.indices(n)[:2]) for s, n in zip(index, tensor.get_shape())]})
    return block

  hf_checkpoint._read_st_block = recording
  try:
    loaded = parallel.load_hf_lm_sharded(path, mesh)
  finally:
    hf_checkpoint._read_st_block = orig
  whole = parallel.shard_model(hf_lm.load_hf_lm(path), mesh)
  got = jax.tree_util.tree_leaves_with_path(loaded.model.params)
  want = jax.tree.leaves(whole.model.params)
  assert len(got) == len(want), (len(got), len(want))
  mismatched, spec_diff = [], []
  for (path_keys, a), b in zip(got, want):
    name = jax.tree_util.keystr(path_keys)
    if not np.array_equal(np.asarray(a), np.asarray(b)):
      mismatched.append(name)
    if not a.sharding.is_equivalent_to(b.sharding, a.ndim):
      spec_diff.append(name)
  report["ckpt"] = {"mismatched": mismatched, "spec_diff": spec_diff, "reads": reads,
                    "num_params": len(got), "model_size": mesh.shape["model"],
                    "config_equal": loaded.model.config == whole.model.config,
                    "eos_id": list(loaded.eos_id)}
  timings[f"{model_type}/checkpoint"] = round(time.time() - t0, 1)


def main(out_dir: str):
  import jax

  assert jax.device_count() == 8, jax.devices()
  results, reports, timings = {}, {}, {}
  for model_type, *setting in FAMILIES:
    reports[model_type] = {}
    run_family(model_type, *setting, out_dir, results, reports[model_type], timings)
  reports["timings"] = timings
  np.savez(os.path.join(out_dir, "lm.npz"), **results)
  with open(os.path.join(out_dir, "lm.json"), "w") as f:
    json.dump(reports, f, indent=1)
