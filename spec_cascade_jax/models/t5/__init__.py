"""The T5 family: encoder-decoder T5 1.0 / 1.1 in Flax, with its checkpoint formats.

    config.py           T5Config, PRESETS, get_config
    model.py            T5Model (the decoder-step protocol), T5Module
    hf.py               Hugging Face T5 directories: load_hf_t5, save_hf_t5
    t5x_checkpoint.py   t5x checkpoints (msgpack + TensorStore, or Orbax)

`models/families.py` registers the family for `load_model`, our own format
and sharding.
"""

from spec_cascade_jax.models.errors import HFCheckpointError, HFCheckpointNotFoundError
from spec_cascade_jax.models.params import count_params, flatten_params, unflatten_params
from spec_cascade_jax.models.t5.config import PRESETS, T5Config, get_config
from spec_cascade_jax.models.t5.hf import load_hf_t5, save_hf_t5
from spec_cascade_jax.models.t5.model import (T5Model, T5Module, relative_position_bucket,
                                              segment_positions)
from spec_cascade_jax.models.t5.t5x_checkpoint import (find_t5x_checkpoint,
                                                       load_t5x_checkpoint, read_t5x_params,
                                                       save_t5x_checkpoint)

__all__ = ["HFCheckpointError", "HFCheckpointNotFoundError", "PRESETS", "T5Config", "T5Model",
           "T5Module", "count_params", "find_t5x_checkpoint", "flatten_params", "get_config",
           "load_hf_t5", "load_t5x_checkpoint", "read_t5x_params", "relative_position_bucket",
           "save_hf_t5", "save_t5x_checkpoint", "segment_positions", "unflatten_params"]
