"""Sharded decoding on a ("data", "model") device mesh, multi-host ready.

    from spec_cascade_jax import parallel
    mesh = parallel.make_mesh(num_partitions=2)            # ("data", "model")
    res = parallel.sharded_generate(drafter, verifier, input_ids, mesh=mesh,
                                    method="speculative", max_new_tokens=64)
    verifier = parallel.load_t5x_sharded(path, mesh)       # reads only local shards
    verifier = parallel.load_hf_lm_sharded(hf_dir, mesh)   # an HF LM, likewise

`partitioning` holds the mesh, logical axis rules and `Partitioner` (the gin
binding), with the decoder-only LMs' axes in `lm_axes`; the rules are resolved
per model, so an axis the mesh does not divide (a 3-head drafter's heads on a
2-way "model" axis) is replicated for that model alone, with a one-time
`ReplicatedAxesWarning` (`replicated_axes` lists them); `generate` the jitted
sharded decode; `checkpoint` and `hf_checkpoint` the sharded t5x and Hugging
Face LM loaders.
"""

from spec_cascade_jax.parallel.checkpoint import load_t5x_sharded
from spec_cascade_jax.parallel.generate import (global_batch, lower_sharded_generate,
                                                sharded_generate)
from spec_cascade_jax.parallel.hf_checkpoint import load_hf_lm_sharded
from spec_cascade_jax.parallel.partitioning import (DATA_PARALLEL_RULES, STANDARD_RULES,
                                                    Partitioner, ReplicatedAxesWarning,
                                                    ShardedModel,
                                                    lm_cache_logical_axes,
                                                    lm_param_logical_axes,
                                                    logical_to_spec, make_mesh,
                                                    model_rules, param_shardings,
                                                    replicated_axes, shard_model,
                                                    t5_cache_logical_axes,
                                                    t5_param_logical_axes)

__all__ = ["DATA_PARALLEL_RULES", "STANDARD_RULES", "Partitioner", "ReplicatedAxesWarning",
           "ShardedModel",
           "global_batch", "load_hf_lm_sharded", "load_t5x_sharded", "lm_cache_logical_axes",
           "lm_param_logical_axes", "logical_to_spec", "lower_sharded_generate",
           "make_mesh", "model_rules", "param_shardings", "replicated_axes", "shard_model",
           "sharded_generate",
           "t5_cache_logical_axes", "t5_param_logical_axes"]
