"""Models: the decoder-step protocol, Flax T5, checkpoint import/export."""

from spec_cascade_jax.models.protocol import Cache, DecoderModel
