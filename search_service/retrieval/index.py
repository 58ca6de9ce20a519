"""FAISS indexes as caches of the database: one per collection, ids = chunk primary keys.

Every process keeps its own in-memory copies and catches them up from the database whenever a
collection's `vector_version` moves, so a running server sees what a worker indexed without a
restart. The worker also writes snapshots (temporary file, fsync, atomic rename) so a process
starting up loads the snapshot and fetches only the difference.

The index type follows the collection's size (`choose_kind`): exact Flat up to `flat_max` vectors,
IVF above (RAG_INDEX_TYPE=auto), or the type named. An index is rebuilt from the database (which
also retrains IVF lists on the collection as it is then) when the wanted type changes, when HNSW
tombstones pass `compact_ratio`, when an IVF collection has grown `retrain_growth` times past its
training size, and on `rebuild` (`search-service reindex`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from search_service.retrieval.ann import (
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    IVF_RETRAIN_GROWTH,
    VectorIndex,
    choose_kind,
)
from search_service.retrieval.vector_store import VectorStore, check_dimension
from search_service.store.models import Chunk, Collection

__all__ = ["IndexManager", "VectorIndex", "vectors_from_bytes"]

log = logging.getLogger(__name__)

FETCH_BATCH = 2000


def vectors_from_bytes(blobs: list[bytes], dimension: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension)


class IndexManager(VectorStore):
    """The FAISS backend: this process's indexes, kept in step with the database by `vector_version`."""

    name = "faiss"

    def __init__(
        self,
        index_dir: Path,
        *,
        kind: str = "auto",
        flat_max: int = 100_000,
        compact_ratio: float = 0.2,
        nprobe: int = DEFAULT_NPROBE,
        ef_search: int = DEFAULT_EF_SEARCH,
        retrain_growth: float = IVF_RETRAIN_GROWTH,
    ):
        self.index_dir = Path(index_dir)
        self.kind = kind
        self.flat_max = flat_max
        self.compact_ratio = compact_ratio
        self.retrain_growth = retrain_growth
        # search options every index of this process gets, whatever its snapshot was built with
        self.options = {"nprobe": nprobe, "ef_search": ef_search, "exact_max": flat_max}
        self._indexes: dict[int, tuple[int, VectorIndex]] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings) -> IndexManager:
        return cls(
            settings.index_dir,
            kind=settings.index_type,
            flat_max=settings.index_flat_max,
            nprobe=settings.index_nprobe,
            ef_search=settings.index_ef_search,
        )

    def snapshot_path(self, collection_id: int) -> Path:
        return self.index_dir / f"collection-{collection_id}.faiss"

    def get(self, session: Session, collection: Collection) -> VectorIndex:
        """The collection's index, caught up with the database when its version moved."""
        with self._lock:
            cached = self._indexes.get(collection.id)
            if cached and cached[0] == collection.vector_version:
                return cached[1]
            index = cached[1] if cached else self._load_snapshot(collection)
            if index is None:
                count = session.scalar(select(func.count()).where(Chunk.collection_id == collection.id)) or 0
                index = self._build(session, collection, choose_kind(count, self.kind, self.flat_max))
            self._catch_up(session, collection, index)
            wanted = choose_kind(len(index), self.kind, self.flat_max, current=index.kind)
            if (
                wanted != index.kind
                or index.tombstone_ratio > self.compact_ratio
                or index.needs_retraining(self.retrain_growth)
            ):
                index = self._build(session, collection, wanted)
            self._indexes[collection.id] = (collection.vector_version, index)
            return index

    def search(self, session: Session, collection: Collection, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Catch up, then search, under one lock: a search never runs while the index changes.
        A vector of another dimension than the collection's (another embedder) is refused first."""
        check_dimension(collection, vector)
        with self._lock:
            return self.get(session, collection).search(vector, k, allowed_ids)

    def count(self, session: Session, collection: Collection) -> int:
        with self._lock:
            return len(self.get(session, collection))

    def after_write(self, session: Session, collection: Collection) -> Path:
        return self.save_snapshot(session, collection)

    def loaded(self) -> dict[int, int]:
        with self._lock:
            return {collection_id: len(index) for collection_id, (_v, index) in self._indexes.items()}

    def save_snapshot(self, session: Session, collection: Collection) -> Path:
        index = self.get(session, collection)
        path = self.snapshot_path(collection.id)
        index.save(
            path,
            {
                "collection": collection.name,
                "vector_version": collection.vector_version,
                "dimension": collection.dimension,
                "embedder_model": collection.embedder_model,
                "count": len(index),
                "faiss_version": faiss.__version__,
                "built_at": time.time(),
            },
        )
        return path

    def rebuild(self, session: Session, collection: Collection) -> Path:
        """Drop the cached index and snapshot, rebuild from the database, write a new snapshot."""
        self.forget(collection.id)
        with self._lock:
            count = session.scalar(select(func.count()).where(Chunk.collection_id == collection.id)) or 0
            index = self._build(session, collection, choose_kind(count, self.kind, self.flat_max))
            self._indexes[collection.id] = (collection.vector_version, index)
        return self.save_snapshot(session, collection)

    def _build(self, session: Session, collection: Collection, kind: str) -> VectorIndex:
        """A fresh index of `kind` from every vector in the database: compacts tombstones, and
        (IVF) trains the lists on the collection as it is now."""
        ids, vectors = self._fetch(session, collection, None)
        started = time.perf_counter()
        index = VectorIndex(collection.dimension, kind=kind, **self.options)
        index.add(ids, vectors)
        log.info(
            "built a %s index of %d vectors for %s in %.1f s%s", kind, len(ids), collection.name,
            time.perf_counter() - started, f" ({index.nlist} lists)" if kind == "ivf" else "",
        )
        return index

    def forget(self, collection_id: int) -> None:
        with self._lock:
            self._indexes.pop(collection_id, None)
        for path in (self.snapshot_path(collection_id), self.snapshot_path(collection_id).with_suffix(".json")):
            path.unlink(missing_ok=True)

    def _load_snapshot(self, collection: Collection) -> VectorIndex | None:
        path = self.snapshot_path(collection.id)
        if path.exists():
            try:
                index, metadata = VectorIndex.load(path, **self.options)
                if index.dimension == collection.dimension:
                    return index
                log.warning("snapshot %s has dimension %s, rebuilding", path, metadata.get("dimension"))
            except Exception:
                log.warning("snapshot %s is unreadable, rebuilding from the database", path, exc_info=True)
        return None

    @staticmethod
    def _catch_up(session: Session, collection: Collection, index: VectorIndex) -> None:
        stored = np.fromiter(
            session.scalars(select(Chunk.id).where(Chunk.collection_id == collection.id)),
            dtype=np.int64,
        )
        present = index.ids()
        index.remove(np.setdiff1d(present, stored, assume_unique=True))
        missing = np.setdiff1d(stored, present, assume_unique=True)
        index.add(*IndexManager._fetch(session, collection, missing))

    @staticmethod
    def _fetch(session: Session, collection: Collection, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the given chunks, or of all the collection's chunks when ids is None."""
        found, blobs = [], []
        if ids is None:
            rows = session.execute(
                select(Chunk.id, Chunk.embedding).where(Chunk.collection_id == collection.id).order_by(Chunk.id)
            )
            for chunk_id, blob in rows:
                found.append(chunk_id)
                blobs.append(blob)
        else:
            for start in range(0, len(ids), FETCH_BATCH):
                batch = [int(i) for i in ids[start : start + FETCH_BATCH]]
                for chunk_id, blob in session.execute(select(Chunk.id, Chunk.embedding).where(Chunk.id.in_(batch))):
                    found.append(chunk_id)
                    blobs.append(blob)
        return np.array(found, dtype=np.int64), vectors_from_bytes(blobs, collection.dimension)
