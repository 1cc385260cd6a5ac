"""Data: the embedded gettext EN->DE corpus and its SentencePiece vocabulary.

Pure Python (sentencepiece, gzip, json): nothing here imports TensorFlow.
"""

from spec_cascade_jax.data.dataset import load_manifest, load_split
from spec_cascade_jax.data.vocab import SentencePieceVocabulary, load_vocabulary

__all__ = ["SentencePieceVocabulary", "load_manifest", "load_split", "load_vocabulary"]
