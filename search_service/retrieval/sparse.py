"""Sparse (lexical) retrieval per collection, built in memory from the database's chunks.

Two methods:

- `lexical`: bge-m3 lexical weights (`retrieval.sparse_head`), stored per chunk in
  `chunks.sparse` at ingestion; score = sum over shared token ids of query weight x chunk weight.
  Used when the embedder's checkpoint has a sparse head.
- `bm25`: BM25 (bm25s, Lucene variant, k1=1.2, b=0.75, as Elasticsearch) over the chunk texts
  with the CJK-aware, stemming analyzer of `retrieval.analyzer` (`RAG_SPARSE_LANGUAGE`). Works
  with any embedder.

`auto` picks `lexical` when the head is loaded, `bm25` otherwise. Like `IndexManager` for FAISS,
each process keeps one index per (collection, method) and catches it up when the collection's
`vector_version` moves: chunks that disappeared are dropped, new ones fetched and analyzed, and
the scorer is rebuilt from the cached terms (BM25's statistics cover the whole collection).
Only chunks with a positive score are candidates; `allowed_ids` restricts them exactly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from search_service.errors import InvalidRequestError
from search_service.retrieval.analyzer import Analyzer
from search_service.store.models import Chunk, Collection

log = logging.getLogger(__name__)

METHODS = ("auto", "bm25", "lexical")
FETCH_BATCH = 2000
BM25_K1, BM25_B = 1.2, 0.75


def _top(ids: np.ndarray, scores: np.ndarray, k: int, allowed_ids: np.ndarray | None) -> list[tuple[int, float]]:
    """The k best positive scores as (chunk id, score), best first, ties by chunk id."""
    keep = scores > 0
    if allowed_ids is not None:
        keep &= np.isin(ids, allowed_ids)
    positions = np.flatnonzero(keep)
    if k <= 0 or len(positions) == 0:
        return []
    order = np.lexsort((ids[positions], -scores[positions]))[:k]
    return [(int(ids[positions[i]]), float(scores[positions[i]])) for i in order]


class BM25Scorer:
    """bm25s over analyzed chunk texts; rows follow `ids`."""

    def __init__(self, ids: np.ndarray, terms: list[list[str]]):
        import bm25s

        self.ids = ids
        self.model = None
        if len(ids) and any(terms):
            self.model = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
            self.model.index(terms, show_progress=False)

    def search(self, query: list[str], k: int, allowed_ids: np.ndarray | None) -> list[tuple[int, float]]:
        known = [term for term in query if self.model is not None and term in self.model.vocab_dict]
        if not known:
            return []
        scores = np.asarray(self.model.get_scores(known), dtype=np.float64)
        return _top(self.ids, scores, k, allowed_ids)


class LexicalScorer:
    """An inverted index of lexical weights: token id -> (rows, weights)."""

    def __init__(self, ids: np.ndarray, weights: list[dict[str, float]]):
        self.ids = ids
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for row, item in enumerate(weights):
            for token, weight in item.items():
                rows, values = postings.setdefault(token, ([], []))
                rows.append(row)
                values.append(weight)
        self.postings = {t: (np.array(r, dtype=np.int64), np.array(v, dtype=np.float64)) for t, (r, v) in postings.items()}

    def search(self, query: dict[str, float], k: int, allowed_ids: np.ndarray | None) -> list[tuple[int, float]]:
        scores = np.zeros(len(self.ids), dtype=np.float64)
        for token, weight in query.items():
            if token in self.postings:
                rows, values = self.postings[token]
                scores[rows] += weight * values
        return _top(self.ids, scores, k, allowed_ids)


@dataclass
class _Cached:
    version: int
    items: dict[int, object] = field(default_factory=dict)  # chunk id -> terms or weights
    scorer: object | None = None


class SparseIndexManager:
    """This process's sparse indexes, kept in step with the database by `vector_version`."""

    def __init__(self, head=None, analyzer: Analyzer | None = None):
        self.head = head  # a SparseHead, or None: BM25 only
        self.analyzer = analyzer if analyzer is not None else Analyzer()
        self._cache: dict[tuple[int, str], _Cached] = {}
        self._lock = threading.RLock()

    def resolve(self, method: str | None) -> str:
        method = method or "auto"
        if method not in METHODS:
            raise InvalidRequestError(f"sparse_method must be one of {', '.join(METHODS)}, got {method!r}")
        if method == "auto":
            return "lexical" if self.head is not None else "bm25"
        if method == "lexical" and self.head is None:
            raise InvalidRequestError(
                "sparse_method 'lexical' needs an embedder with a sparse head (bge-m3's sparse_linear.pt); "
                "use 'bm25'",
                code="sparse_head_not_available",
            )
        return method

    def passage_weights(self, texts: list[str]) -> list[dict[str, float]] | None:
        """Lexical weights to store with new chunks, or None without a sparse head."""
        return self.head.encode(texts) if self.head is not None and texts else None

    def query_terms(self, method: str, query: str):
        return self.head.encode([query])[0] if method == "lexical" else self.analyzer(query)

    def search(self, session: Session, collection: Collection, method: str, terms, k: int, allowed_ids: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Catch up, then score, under one lock: a search never sees a half-updated index."""
        if allowed_ids is not None and len(allowed_ids) == 0:
            return []
        with self._lock:
            return self._get(session, collection, method).scorer.search(terms, k, allowed_ids)

    def forget(self, collection_id: int) -> None:
        with self._lock:
            for key in [key for key in self._cache if key[0] == collection_id]:
                del self._cache[key]

    def _get(self, session: Session, collection: Collection, method: str) -> _Cached:
        key = (collection.id, method)
        cached = self._cache.get(key)
        if cached is not None and cached.version == collection.vector_version:
            return cached
        cached = cached or _Cached(collection.vector_version)
        stored = set(session.scalars(select(Chunk.id).where(Chunk.collection_id == collection.id)))
        for gone in set(cached.items) - stored:
            del cached.items[gone]
        missing = sorted(stored - set(cached.items))
        column = Chunk.sparse if method == "lexical" else Chunk.text
        for start in range(0, len(missing), FETCH_BATCH):
            batch = missing[start : start + FETCH_BATCH]
            for chunk_id, value in session.execute(select(Chunk.id, column).where(Chunk.id.in_(batch))):
                cached.items[chunk_id] = (value or {}) if method == "lexical" else self.analyzer(value or "")
        ids = np.array(sorted(cached.items), dtype=np.int64)
        values = [cached.items[int(i)] for i in ids]
        cached.scorer = LexicalScorer(ids, values) if method == "lexical" else BM25Scorer(ids, values)
        cached.version = collection.vector_version
        self._cache[key] = cached
        log.debug("sparse %s index of %s: %d chunks at version %d", method, collection.name, len(ids), cached.version)
        return cached
