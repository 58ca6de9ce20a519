"""One protocol for where a collection's vectors are searched, and the backends behind it.

- `faiss` (`retrieval/index.py`, `IndexManager`): each process holds an in-memory FAISS index
  per collection, a cache of `chunks.embedding` caught up by `vector_version`, with snapshots.
- `pgvector` (`retrieval/pgvector_store.py`, `PgvectorStore`): the vectors live in PostgreSQL
  (`chunk_vectors`, an HNSW index per collection); processes hold nothing.

A collection records its backend when it is created (RAG_VECTOR_BACKEND); `VectorStores` sends
each call to the collection's backend, so a process configured for one backend still serves
collections recorded with the other (when it can build it), and a collection never changes
backend except through `search-service move-collection`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from search_service.errors import ConfigurationError, DimensionMismatchError
from search_service.model_names import display_name
from search_service.store.models import Collection

Hits = list[tuple[int, float]]


def check_dimension(collection: Collection, vector: np.ndarray) -> None:
    """A vector of another dimension than the collection's (another embedder) is refused."""
    if len(vector) != collection.dimension:
        raise DimensionMismatchError(
            f"collection {collection.name!r} holds {collection.dimension}-dimensional vectors "
            f"from {display_name(collection.embedder_model)}; the configured embedder gives "
            f"{len(vector)}-dimensional ones: serve it with RAG_EMBEDDER_MODEL="
            f"{display_name(collection.embedder_model)}, or re-ingest it into a new collection"
        )


class VectorStore:
    """A backend: inner-product top-k over a collection's chunk vectors, ids = chunk ids.

    Writes go through the database (`store.collections.replace_chunks`, `delete_document`), in
    the transaction that changes the chunks; a backend only reads, caches and maintains."""

    name = "base"

    def search(self, session: Session, collection: Collection, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> Hits:
        """The k best (chunk id, inner product) pairs, best first; only among `allowed_ids` when
        given (at most `flat_max` allowed: exact)."""
        raise NotImplementedError

    def count(self, session: Session, collection: Collection) -> int:
        """Vectors this backend would search for the collection now."""
        raise NotImplementedError

    def after_write(self, session: Session, collection: Collection) -> Path | None:
        """Called by the writer after its transaction committed (FAISS: write a snapshot)."""
        return None

    def rebuild(self, session: Session, collection: Collection) -> str:
        """Rebuild the collection's index from the database; says what it did."""
        raise NotImplementedError

    def forget(self, collection_id: int) -> None:
        """Drop whatever this process holds for a deleted collection."""

    def loaded(self) -> dict[int, int]:
        """Vectors this process holds in memory, by collection id."""
        return {}


def _faiss(settings) -> VectorStore:
    from search_service.retrieval.index import IndexManager

    return IndexManager.from_settings(settings)


def _pgvector(settings) -> VectorStore:
    from search_service.retrieval.pgvector_store import PgvectorStore

    return PgvectorStore.from_settings(settings)


BACKENDS = {"faiss": _faiss, "pgvector": _pgvector}


class VectorStores(VectorStore):
    """Routes each call to the backend the collection records; backends are built when first needed."""

    name = "router"

    def __init__(self, settings, backends: dict[str, VectorStore] | None = None):
        self.settings = settings
        self.backends: dict[str, VectorStore] = dict(backends or {})
        self._lock = threading.Lock()  # request threads: one backend of each kind per process

    def backend(self, name: str) -> VectorStore:
        with self._lock:
            if name not in self.backends:
                if name not in BACKENDS:
                    raise ConfigurationError(f"unknown vector backend {name!r}; known: {', '.join(BACKENDS)}")
                self.backends[name] = BACKENDS[name](self.settings)
            return self.backends[name]

    def for_collection(self, collection: Collection) -> VectorStore:
        return self.backend(collection.vector_backend or "faiss")

    @property
    def faiss(self):
        return self.backend("faiss")

    def search(self, session, collection, vector, k, allowed_ids=None) -> Hits:
        check_dimension(collection, vector)
        return self.for_collection(collection).search(session, collection, vector, k, allowed_ids)

    def count(self, session, collection) -> int:
        return self.for_collection(collection).count(session, collection)

    def after_write(self, session, collection):
        return self.for_collection(collection).after_write(session, collection)

    def save_snapshot(self, session, collection):  # the writer's name for after_write
        return self.after_write(session, collection)

    def rebuild(self, session, collection) -> str:
        return self.for_collection(collection).rebuild(session, collection)

    def forget(self, collection_id: int) -> None:
        for backend in list(self.backends.values()):
            backend.forget(collection_id)

    def get(self, session, collection):
        """FAISS collections: this process's index (tests, crash checks)."""
        return self.faiss.get(session, collection)

    def loaded(self) -> dict[int, int]:
        held: dict[int, int] = {}
        for backend in list(self.backends.values()):
            held.update(backend.loaded())
        return held
