"""Logical axes of the decoder-only LMs (models/lm/model.py), in t5x names.

`partitioning.py` shards every model family through one dispatch; this
module is the LM's table (`partitioning.lm_param_logical_axes` and
`lm_cache_logical_axes` apply it). Names as in partitioning.py, plus one:

  kv_heads        key/value heads (H_kv; joined with head_dim in the
                  2-D k/v kernels and biases)                 -> "model"

LM parameters (models/lm/model.py, all kernels 2-D [in, out]):
  token_embedder/embedding [V, D]               (vocab, embed)
  layers_i/attention/query/kernel [D, H*Dh]     (embed, joined_kv);  bias (joined_kv,)
  layers_i/attention/{key,value}/kernel [D, Hkv*Dh]
                                                (embed, kv_heads);   bias (kv_heads,)
  layers_i/attention/out/kernel [H*Dh, D]       (joined_kv, embed);  bias (embed,)
  layers_i/attention/{query,key}_norm/scale [Dh] (kv,)
  layers_i/mlp/{wi_0,wi_1}/kernel [D, F]        (embed, mlp);  mlp/wo (mlp, embed)
  layers_i/*_norm/scale, decoder_norm/scale [D] (embed,)
  logits_dense/kernel [D, V] (untied only)      (embed, vocab)
LM cache (LMModel.init_cache):
  layers/layers_i/{key,value} [B, Hkv, L, Dh]   (batch, kv_heads, length, kv)
  last_token [B], offset [B]                    (batch,)

Query heads follow T5's rule: joined_kv = H * Dh over "model" puts whole
heads on each device when H divides by the "model" size; when it does not,
joined_kv is replicated for that model with a ReplicatedAxesWarning
(partitioning.model_rules). Key/value heads: grouped-query attention lets
query head h read K/V head h // (H / Hkv), so with contiguous splits device
i's query heads read exactly its own K/V heads whenever Hkv divides by the
"model" size; then kv_heads is split like heads, and attention, K/V
projections and the caches stay local. When it does not (multi-query Hkv = 1, or Hkv = 2 on
4 devices) a K/V head would be needed on several devices, so `kv_heads` is
REPLICATED for that model (partitioning resolves the rule per model, no
error): every device computes all Hkv heads' K/V and keeps them in its cache
(still split by batch). That costs Hkv * Dh * D kernel and B * Hkv * L * Dh
cache memory per device, which is small exactly where it happens (Hkv is
small). Mapping kv_heads to None in the rules replicates it always.
"""

from __future__ import annotations

_ATTN = r"^layers_\d+/attention"
PARAM_AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"^token_embedder/embedding$", ("vocab", "embed")),
    (rf"{_ATTN}/query/kernel$", ("embed", "joined_kv")),
    (rf"{_ATTN}/query/bias$", ("joined_kv",)),
    (rf"{_ATTN}/(key|value)/kernel$", ("embed", "kv_heads")),
    (rf"{_ATTN}/(key|value)/bias$", ("kv_heads",)),
    (rf"{_ATTN}/out/kernel$", ("joined_kv", "embed")),
    (rf"{_ATTN}/out/bias$", ("embed",)),
    (rf"{_ATTN}/(query|key)_norm/scale$", ("kv",)),
    (r"^layers_\d+/mlp/wi_[01]/kernel$", ("embed", "mlp")),
    (r"^layers_\d+/mlp/wo/kernel$", ("mlp", "embed")),
    (r"^(layers_\d+/\w+_norm|decoder_norm)/scale$", ("embed",)),
    (r"^logits_dense/kernel$", ("embed", "vocab")),
)
CACHE_AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"^layers/layers_\d+/(key|value)$", ("batch", "kv_heads", "length", "kv")),
    (r"^(last_token|offset)$", ("batch",)),
)


def head_counts(config) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
  """(split, replicate_if_uneven): {logical name: (config field, head count)}.

  A name whose mesh axis does not divide its count is replicated for this
  model: a `split` one with a ReplicatedAxesWarning, a `replicate_if_uneven`
  one silently (partitioning.model_rules).
  """
  return ({"joined_kv": ("num_heads", config.num_heads)},
          {"kv_heads": ("num_kv_heads", config.num_kv_heads)})
