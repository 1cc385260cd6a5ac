"""Models: the decoder-step protocol, Flax T5 and decoder-only LMs (Gemma, Llama,
Qwen), checkpoint import/export."""

from spec_cascade_jax.models.protocol import Cache, DecoderModel
