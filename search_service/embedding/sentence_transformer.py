"""The sentence-transformers embedder (BAAI/bge-m3 by default)."""

from __future__ import annotations

import logging
import threading

import numpy as np

from search_service.devices import resolve_device
from search_service.embedding.base import Kind
from search_service.embedding.query_cache import QueryEmbeddingCache
from search_service.errors import ModelLoadError
from search_service.models import describe_load_failure

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder:
    """Wraps a `SentenceTransformer`; applies the model's own query/document prompts if it has any.

    `encode` sorts each call's texts by length before batching, so ingestion's batches pad little.
    Query embeddings are cached (`query_cache_size` entries, 0 disables).
    """

    def __init__(self, model, model_id: str, batch_size: int = 32, query_cache_size: int = 1024):
        self.model = model
        self.model_id = model_id
        self.batch_size = batch_size
        self.dimension = int(model.get_embedding_dimension())
        self.max_seq_length = int(model.max_seq_length)
        self.tokenizer = model.tokenizer
        self.num_special_tokens = int(self.tokenizer.num_special_tokens_to_add(pair=False))
        self.device = str(model.device)
        # One forward at a time: torch modules are not re-entrant across request threads.
        self._lock = threading.Lock()
        self.query_cache = QueryEmbeddingCache(query_cache_size)

    def embed(self, texts: list[str], kind: Kind = "passage", *, show_progress: bool = False) -> np.ndarray:
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if kind == "query":
            return self.query_cache.embed(
                self.model_id, list(texts), lambda missing: self._encode(missing, kind, show_progress)
            )
        return self._encode(list(texts), kind, show_progress)

    def _encode(self, texts: list[str], kind: Kind, show_progress: bool) -> np.ndarray:
        encode = self.model.encode_query if kind == "query" else self.model.encode_document
        with self._lock:
            vectors = encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_embedder(
    model_id: str, device: str = "auto", batch_size: int = 32, query_cache_size: int = 1024
) -> SentenceTransformerEmbedder:
    """Load a hub id or local directory; fail at once, naming the setting, if it cannot be loaded."""
    from sentence_transformers import SentenceTransformer

    resolved = resolve_device(device)
    try:
        model = SentenceTransformer(model_id, device=resolved)
    except Exception as exc:
        raise ModelLoadError(describe_load_failure("RAG_EMBEDDER_MODEL", model_id, exc)) from exc
    model.eval()
    log.info("embedder %s loaded on %s", model_id, resolved)
    return SentenceTransformerEmbedder(
        model, model_id, batch_size=batch_size, query_cache_size=query_cache_size
    )
