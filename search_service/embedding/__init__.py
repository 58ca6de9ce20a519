"""Embedders: `Embedder.embed(texts, kind="query"|"passage") -> np.ndarray` (normalized float32)."""

from search_service.embedding.base import Embedder
from search_service.embedding.sentence_transformer import SentenceTransformerEmbedder, load_embedder

__all__ = ["Embedder", "SentenceTransformerEmbedder", "load_embedder"]
