"""FAISS indexes as caches of the database: one per collection, ids = chunk primary keys.

Every process keeps its own in-memory copies and catches them up from the database whenever a
collection's `vector_version` moves, so a running server sees what a worker indexed without a
restart. The worker also writes snapshots (temporary file, fsync, atomic rename) so a process
starting up loads the snapshot and fetches only the difference.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from search_service.store.models import Chunk, Collection

log = logging.getLogger(__name__)

FETCH_BATCH = 2000


class VectorIndex:
    """Exact inner-product search over normalized vectors, with explicit int64 ids."""

    def __init__(self, dimension: int, index: faiss.Index | None = None):
        self.dimension = dimension
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dimension:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions, index has {self.dimension}")
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best (id, score) pairs, only among `allowed_ids` when given (exact either way)."""
        if len(self) == 0 or k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        params = None
        if allowed_ids is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            params = faiss.SearchParameters(sel=selector)
        scores, ids = self.index.search(query, min(k, len(self)), params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]

    def save(self, path: Path, metadata: dict) -> None:
        """Write the index and its metadata so a reader never sees a half-written file."""
        _atomic_write(path, faiss.serialize_index(self.index).tobytes())
        _atomic_write(path.with_suffix(".json"), json.dumps(metadata, indent=2).encode())

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, dict]:
        index = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        metadata = json.loads(path.with_suffix(".json").read_text())
        return cls(index.d, index), metadata


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def vectors_from_bytes(blobs: list[bytes], dimension: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension)


class IndexManager:
    """This process's indexes, kept in step with the database by `vector_version`."""

    def __init__(self, index_dir: Path):
        self.index_dir = Path(index_dir)
        self._indexes: dict[int, tuple[int, VectorIndex]] = {}
        self._lock = threading.RLock()

    def snapshot_path(self, collection_id: int) -> Path:
        return self.index_dir / f"collection-{collection_id}.faiss"

    def get(self, session: Session, collection: Collection) -> VectorIndex:
        """The collection's index, caught up with the database when its version moved."""
        with self._lock:
            cached = self._indexes.get(collection.id)
            if cached and cached[0] == collection.vector_version:
                return cached[1]
            index = cached[1] if cached else self._load_snapshot(collection)
            self._catch_up(session, collection, index)
            self._indexes[collection.id] = (collection.vector_version, index)
            return index

    def search(self, session: Session, collection: Collection, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Catch up, then search, under one lock: a search never runs while the index changes."""
        with self._lock:
            return self.get(session, collection).search(vector, k, allowed_ids)

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
            index = VectorIndex(collection.dimension)
            self._catch_up(session, collection, index)
            self._indexes[collection.id] = (collection.vector_version, index)
        return self.save_snapshot(session, collection)

    def forget(self, collection_id: int) -> None:
        with self._lock:
            self._indexes.pop(collection_id, None)
        for path in (self.snapshot_path(collection_id), self.snapshot_path(collection_id).with_suffix(".json")):
            path.unlink(missing_ok=True)

    def _load_snapshot(self, collection: Collection) -> VectorIndex:
        path = self.snapshot_path(collection.id)
        if path.exists():
            try:
                index, metadata = VectorIndex.load(path)
                if index.dimension == collection.dimension:
                    return index
                log.warning("snapshot %s has dimension %s, rebuilding", path, metadata.get("dimension"))
            except Exception:  # noqa: BLE001 - a corrupt snapshot is rebuilt from the database
                log.warning("snapshot %s is unreadable, rebuilding from the database", path, exc_info=True)
        return VectorIndex(collection.dimension)

    @staticmethod
    def _catch_up(session: Session, collection: Collection, index: VectorIndex) -> None:
        stored = np.fromiter(
            session.scalars(select(Chunk.id).where(Chunk.collection_id == collection.id)),
            dtype=np.int64,
        )
        present = index.ids()
        index.remove(np.setdiff1d(present, stored, assume_unique=True))
        missing = np.setdiff1d(stored, present, assume_unique=True)
        for start in range(0, len(missing), FETCH_BATCH):
            batch = [int(i) for i in missing[start : start + FETCH_BATCH]]
            rows = session.execute(
                select(Chunk.id, Chunk.embedding).where(Chunk.id.in_(batch))
            ).all()
            index.add(
                np.array([row[0] for row in rows], dtype=np.int64),
                vectors_from_bytes([row[1] for row in rows], collection.dimension),
            )
