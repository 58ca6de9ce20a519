"""One collection's vectors in FAISS: exact Flat, or IVF (or HNSW) for large collections.

Ids are chunk primary keys, inner product over normalized vectors.

- `flat`: `IndexIDMap2(IndexFlatIP)`, exact; removal is native.
- `ivf`: `IndexIVFFlat` (inner product) with FAISS's own ids (`add_with_ids`) and a hashtable
  direct map, so removal (`remove_ids`) and `reconstruct` work by chunk id without an IDMap
  wrapper. It is trained (k-means, `ivf_lists(n)` lists, on at most `IVF_TRAIN_MAX` vectors
  sampled from the collection) when its first vectors are added; later vectors are assigned to
  the trained lists. `IndexManager` retrains it (a rebuild from the database) when the
  collection has grown `IVF_RETRAIN_GROWTH` times past the size it was trained on. A search
  probes `nprobe` lists; `nprobe = nlist` visits every vector, which is exact.
- `hnsw`: `IndexIDMap2(IndexHNSWFlat)`. HNSW cannot remove vectors, so removals become
  tombstones, filtered at search time and compacted when the index is rebuilt.

Filtered searches (`allowed_ids`) are exact whenever at most `exact_max` ids are allowed (the
same bound below which `auto` keeps a collection exact): all IVF lists are scanned with an id
selector, or the allowed HNSW vectors are scored directly. Broader filters search approximately
(IVF probes proportionally more lists), and any search that comes back short falls back to exact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

KINDS = ("flat", "ivf", "hnsw")
LARGE_KIND = "ivf"  # what `auto` uses above the flat limit (docs/benchmarks.md, "FAISS index types")
HNSW_M = 32
DEFAULT_NPROBE = 256
DEFAULT_EF_SEARCH = 512
IVF_TRAIN_MAX = 100_000
IVF_RETRAIN_GROWTH = 4.0
EXACT_BATCH = 8192


def ivf_lists(count: int) -> int:
    """IVF inverted lists for `count` vectors: about 4*sqrt(n), at least 39 training points each."""
    return max(1, min(int(4 * math.sqrt(count)), count // 39))


def choose_kind(count: int, setting: str = "auto", flat_max: int = 100_000, current: str | None = None) -> str:
    """`auto`: exact Flat up to `flat_max` vectors, `LARGE_KIND` above; otherwise the named kind.

    An approximate index (`current`) is kept until the collection shrinks below 90 % of
    `flat_max`, so a collection hovering around the limit is not rebuilt back and forth."""
    if setting != "auto":
        return setting
    if current in (LARGE_KIND, "hnsw") and count > 0.9 * flat_max:
        return LARGE_KIND
    return "flat" if count <= flat_max else LARGE_KIND


def _build(kind: str, dimension: int, lists: int = 1) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(inner)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids and reconstruct by chunk id
        return index
    raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")


class VectorIndex:
    """Inner-product search over normalized vectors with explicit int64 ids."""

    def __init__(
        self,
        dimension: int,
        index: faiss.Index | None = None,
        *,
        kind: str = "flat",
        nprobe: int = DEFAULT_NPROBE,
        ef_search: int = DEFAULT_EF_SEARCH,
        exact_max: int = 100_000,
    ):
        self.dimension = dimension
        self.kind = kind
        self.index = index if index is not None else _build(kind, dimension)
        self.tombstones: set[int] = set()
        self.trained_on = int(self.index.ntotal) if kind == "ivf" and self.index.is_trained else 0
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.exact_max = exact_max

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.kind == "ivf" else 0

    def ids(self) -> np.ndarray:
        if self.kind == "ivf":
            lists = self.index.invlists
            parts = [
                faiss.rev_swig_ptr(lists.get_ids(i), size).copy()
                for i in range(lists.nlist)
                if (size := lists.list_size(i))
            ]
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
        stored = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if self.tombstones:
            stored = stored[~np.isin(stored, np.fromiter(self.tombstones, dtype=np.int64))]
        return stored

    @property
    def tombstone_ratio(self) -> float:
        return len(self.tombstones) / max(1, int(self.index.ntotal))

    def needs_retraining(self, growth: float = IVF_RETRAIN_GROWTH) -> bool:
        """IVF only: the collection grew `growth` times past its training size and would get more lists."""
        if self.kind != "ivf" or not self.index.is_trained:
            return False
        return len(self) > growth * max(1, self.trained_on) and ivf_lists(len(self)) > self.nlist

    def train(self, vectors: np.ndarray) -> None:
        """IVF: k-means on (a sample of) `vectors`; the list count follows from their number."""
        if self.kind != "ivf" or len(vectors) == 0:
            return
        if self.index.ntotal:
            raise ValueError("an IVF index holding vectors cannot be retrained; rebuild it")
        self.index = _build("ivf", self.dimension, ivf_lists(len(vectors)))
        sample = vectors
        if len(vectors) > IVF_TRAIN_MAX:
            rows = np.sort(np.random.default_rng(0).choice(len(vectors), IVF_TRAIN_MAX, replace=False))
            sample = vectors[rows]
        # 100,000 points for up to 4,000 lists (a million vectors) is >= 25 per list: FAISS warns
        # below 39, but recall@50 measured with it was 0.984 at 1M (docs/benchmarks.md)
        self.index.cp.min_points_per_centroid = min(39, len(sample) // self.index.nlist)
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.trained_on = len(vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dimension:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions, index has {self.dimension}")
        if self.kind == "ivf" and not self.index.is_trained:
            self.train(vectors)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "hnsw":
            self.tombstones.update(int(i) for i in ids)
        elif self.kind == "ivf":
            self.index.remove_ids(faiss.IDSelectorArray(ids))  # the form a hashtable direct map takes
        else:
            self.index.remove_ids(ids)

    def search(self, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best (id, score) pairs, only among `allowed_ids` when given."""
        if len(self) == 0 or k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if allowed_ids is not None:
            allowed_ids = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            if self.tombstones:
                allowed_ids = allowed_ids[~np.isin(allowed_ids, np.fromiter(self.tombstones, dtype=np.int64))]
            if len(allowed_ids) == 0:
                return []
        limit = min(k, len(self) if allowed_ids is None else len(allowed_ids))
        exact = self.kind == "flat" or (allowed_ids is not None and len(allowed_ids) <= self.exact_max)
        if exact and self.kind == "hnsw":
            return self._exact(query[0], k, allowed_ids)
        hits = self._search(query, limit, k, allowed_ids, exact)
        if len(hits) < limit and not exact:
            if self.kind == "ivf":
                return self._search(query, limit, k, allowed_ids, exact=True)
            return self._exact(query[0], k, allowed_ids if allowed_ids is not None else self.ids())
        return hits

    def _search(self, query: np.ndarray, limit: int, k: int, allowed_ids: np.ndarray | None, exact: bool) -> list[tuple[int, float]]:
        selector = self._selector(allowed_ids)
        scores, ids = self.index.search(query, limit, params=self._params(selector, k, allowed_ids, exact))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]

    def _selector(self, allowed_ids: np.ndarray | None):
        if allowed_ids is not None:
            return faiss.IDSelectorBatch(allowed_ids)
        if self.tombstones:
            dead = faiss.IDSelectorBatch(np.fromiter(self.tombstones, dtype=np.int64))
            selector = faiss.IDSelectorNot(dead)
            selector.referenced = dead  # keep the wrapped selector alive while searching
            return selector
        return None

    def _params(self, selector, k: int, allowed_ids: np.ndarray | None, exact: bool):
        if self.kind == "ivf":
            nprobe = self.nprobe
            if allowed_ids is not None:  # a broad filter: probe more lists to see as many allowed vectors
                nprobe = math.ceil(nprobe * len(self) / len(allowed_ids))
            nprobe = self.nlist if exact else max(1, min(nprobe, self.nlist))
            if selector is None:
                return faiss.SearchParametersIVF(nprobe=nprobe)
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        if self.kind == "hnsw":
            if selector is None:
                return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, k))
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _exact(self, query: np.ndarray, k: int, ids: np.ndarray) -> list[tuple[int, float]]:
        """Score the given ids' vectors directly (those still in the index), in batches."""
        ids = ids[np.isin(ids, self.ids())]
        best_ids, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        for start in range(0, len(ids), EXACT_BATCH):
            batch = ids[start : start + EXACT_BATCH]
            scores = self.index.reconstruct_batch(batch) @ query
            best_ids = np.concatenate([best_ids, batch])
            best_scores = np.concatenate([best_scores, scores])
            if len(best_ids) > k:
                keep = np.argpartition(-best_scores, k)[:k]
                best_ids, best_scores = best_ids[keep], best_scores[keep]
        order = np.lexsort((best_ids, -best_scores))[:k]
        return [(int(best_ids[i]), float(best_scores[i])) for i in order]

    def save(self, path: Path, metadata: dict) -> None:
        """Write the index and its metadata so a reader never sees a half-written file."""
        metadata = {
            **metadata,
            "kind": self.kind,
            "tombstones": sorted(self.tombstones),
            "trained_on": self.trained_on,
            "nlist": self.nlist,
        }
        atomic_write(path, faiss.serialize_index(self.index).tobytes())
        atomic_write(path.with_suffix(".json"), json.dumps(metadata, indent=2).encode())

    @classmethod
    def load(cls, path: Path, **options) -> tuple[VectorIndex, dict]:
        index = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        metadata = json.loads(path.with_suffix(".json").read_text())
        kind = metadata.get("kind", "flat")
        if (kind == "ivf") != isinstance(index, faiss.IndexIVF):
            raise ValueError(f"snapshot {path} says {kind!r} but holds a {type(index).__name__}")
        loaded = cls(index.d, index, kind=kind, **options)
        loaded.tombstones = set(metadata.get("tombstones", []))
        loaded.trained_on = int(metadata.get("trained_on", loaded.trained_on))
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
