"""The decoder-only LM family: Gemma 1/2/3 (text), Llama 3, Qwen 2 in Flax.

    config.py   LMConfig, the presets (PRESETS, get_config, tiny_config)
    model.py    LMModel (the decoder-step protocol), LMModule
    hf.py       Hugging Face directories: load_hf_lm, save_hf_lm

`models/families.py` registers the family for `load_model`, our own format
and sharding.
"""

from spec_cascade_jax.models.errors import HFCheckpointError, HFCheckpointNotFoundError
from spec_cascade_jax.models.lm.config import (MODEL_TYPES, PRESETS, LMConfig, get_config,
                                               tiny_config)
from spec_cascade_jax.models.lm.hf import SUPPORTED_MODEL_TYPES, load_hf_lm, save_hf_lm
from spec_cascade_jax.models.lm.model import LMModel, LMModule
from spec_cascade_jax.models.params import count_params

__all__ = ["HFCheckpointError", "HFCheckpointNotFoundError", "LMConfig", "LMModel", "LMModule",
           "MODEL_TYPES", "PRESETS", "SUPPORTED_MODEL_TYPES", "count_params", "get_config",
           "load_hf_lm", "save_hf_lm", "tiny_config"]
