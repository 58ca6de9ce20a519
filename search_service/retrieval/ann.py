"""One collection's vectors in FAISS: exact Flat, or HNSW for large collections.

Ids are chunk primary keys. HNSW cannot remove vectors, so removals there become tombstones,
filtered at search time and compacted when the index is rebuilt. A filtered or tombstoned
search on an approximate index that comes back short falls back to exact scoring of the
allowed vectors, so filters never lose true top results.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

KINDS = ("flat", "hnsw")
HNSW_M = 32


def choose_kind(count: int, setting: str = "auto", flat_max: int = 100_000) -> str:
    """`auto`: exact Flat up to `flat_max` vectors, HNSW above; otherwise the named kind."""
    if setting != "auto":
        return setting
    return "flat" if count <= flat_max else "hnsw"


def _build(kind: str, dimension: int) -> faiss.Index:
    if kind == "flat":
        inner = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
    else:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    return faiss.IndexIDMap2(inner)


class VectorIndex:
    """Inner-product search over normalized vectors with explicit int64 ids."""

    def __init__(self, dimension: int, index: faiss.Index | None = None, *, kind: str = "flat"):
        self.dimension = dimension
        self.kind = kind
        self.index = index if index is not None else _build(kind, dimension)
        self.tombstones: set[int] = set()

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones)

    def ids(self) -> np.ndarray:
        stored = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if self.tombstones:
            stored = stored[~np.isin(stored, np.fromiter(self.tombstones, dtype=np.int64))]
        return stored

    @property
    def tombstone_ratio(self) -> float:
        return len(self.tombstones) / max(1, int(self.index.ntotal))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dimension:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions, index has {self.dimension}")
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if self.kind != "flat":
            self.tombstones.update(int(i) for i in ids)
        else:
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best (id, score) pairs, only among `allowed_ids` when given."""
        if len(self) == 0 or k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if allowed_ids is not None and self.tombstones:
            allowed_ids = allowed_ids[~np.isin(allowed_ids, np.fromiter(self.tombstones, dtype=np.int64))]
        selector = self._selector(allowed_ids)
        limit = min(k, len(self) if allowed_ids is None else len(allowed_ids))
        scores, ids = self.index.search(query, limit, params=self._params(selector, k))
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]
        if len(hits) < limit and self.kind != "flat":
            return self._exact(query[0], k, allowed_ids if allowed_ids is not None else self.ids())
        return hits

    def _selector(self, allowed_ids: np.ndarray | None):
        if allowed_ids is not None:
            return faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
        if self.tombstones:
            dead = faiss.IDSelectorBatch(np.fromiter(self.tombstones, dtype=np.int64))
            selector = faiss.IDSelectorNot(dead)
            selector.referenced = dead  # keep the wrapped selector alive while searching
            return selector
        return None

    def _params(self, selector, k: int):
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(128, 2 * k))
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _exact(self, query: np.ndarray, k: int, ids: np.ndarray) -> list[tuple[int, float]]:
        if len(ids) == 0:
            return []
        vectors = np.vstack([self.index.reconstruct(int(i)) for i in ids])
        scores = vectors @ query
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[i]), float(scores[i])) for i in order]

    def save(self, path: Path, metadata: dict) -> None:
        """Write the index and its metadata so a reader never sees a half-written file."""
        metadata = {**metadata, "kind": self.kind, "tombstones": sorted(self.tombstones)}
        atomic_write(path, faiss.serialize_index(self.index).tobytes())
        atomic_write(path.with_suffix(".json"), json.dumps(metadata, indent=2).encode())

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, dict]:
        index = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        metadata = json.loads(path.with_suffix(".json").read_text())
        loaded = cls(index.d, index, kind=metadata.get("kind", "flat"))
        loaded.tombstones = set(metadata.get("tombstones", []))
        return loaded, metadata


def atomic_write(path: Path, data: bytes) -> None:
    """Temporary file, fsync, atomic rename, fsync the directory."""
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
