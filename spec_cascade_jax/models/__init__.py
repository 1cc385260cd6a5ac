"""Models: the decoder-step protocol, one sub-package per family (`t5/`: Flax T5;
`lm/`: decoder-only LMs, Gemma, Llama, Qwen), the family registry
(`families.py`), and checkpoint import/export (`loading.load_model`)."""

from spec_cascade_jax.models.protocol import Cache, DecoderModel
