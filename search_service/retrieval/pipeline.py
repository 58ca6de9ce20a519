"""The two-stage query path: dense top-`candidates` from FAISS, rerank, top-`top_k`."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from search_service.errors import InvalidRequestError, NotFoundError
from search_service.rerankers.base import sigmoid
from search_service.retrieval.index import IndexManager
from search_service.store import collections as store
from search_service.store.db import Database


class Timer:
    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000


@dataclass
class RerankerSet:
    """The loaded rerankers by name; `default` is used when a request names none."""

    rerankers: dict
    default: str | None

    def pick(self, name: str | None):
        if not self.rerankers:
            raise InvalidRequestError(
                "no reranker is configured (RAG_RERANKER_MODEL=none); set RAG_RERANKER_MODEL to "
                "enable reranking or send rerank: false",
                code="reranker_not_configured",
            )
        if name is None:
            return self.rerankers[self.default]
        if name not in self.rerankers:
            raise NotFoundError(
                f"reranker {name!r} is not loaded; loaded: {', '.join(sorted(self.rerankers))}",
                code="reranker_not_found",
            )
        return self.rerankers[name]


class SearchPipeline:
    def __init__(self, database: Database, embedder, indexes: IndexManager, rerankers: RerankerSet):
        self.database = database
        self.embedder = embedder
        self.indexes = indexes
        self.rerankers = rerankers

    def search(
        self,
        collection_name: str,
        query: str,
        *,
        top_k: int,
        candidates: int,
        rerank: bool | None = None,
        reranker: str | None = None,
        document_filter=None,
        rerank_options: dict | None = None,
    ) -> dict:
        """`document_filter(external_id, source, metadata) -> bool` restricts the candidates."""
        timer = Timer()
        started = time.perf_counter()
        use_reranker = bool(self.rerankers.rerankers) if rerank is None else rerank
        model = self.rerankers.pick(reranker) if use_reranker else None
        candidates = max(candidates, top_k)
        with self.database.session() as session:
            with timer.stage("db"):
                collection = store.get_collection(session, collection_name)
            with timer.stage("embed"):
                vector = self.embedder.embed([query], kind="query")[0]
            allowed = None
            if document_filter is not None:
                with timer.stage("db"):
                    allowed = np.array(store.matching_chunk_ids(session, collection, document_filter), dtype=np.int64)
            with timer.stage("search"):
                hits = self.indexes.search(session, collection, vector, candidates, allowed)
            with timer.stage("db"):
                rows = store.chunks_by_id(session, collection, [chunk_id for chunk_id, _ in hits])
        results = []
        for rank, (chunk_id, dense_score) in enumerate(hits, start=1):
            if chunk_id not in rows:  # deleted after the index snapshot was taken
                continue
            chunk, document = rows[chunk_id]
            results.append(
                {
                    "chunk_id": chunk.id,
                    "document_id": document.external_id,
                    "source": document.source,
                    "text": chunk.text,
                    "start": chunk.char_start,
                    "end": chunk.char_end,
                    "metadata": dict(document.meta or {}),
                    "score": dense_score,
                    "rerank_score": None,
                    "dense_score": dense_score,
                    "dense_rank": rank,
                }
            )
        if model is not None and results:
            with timer.stage("rerank"):
                raw = model.score(query, [r["text"] for r in results], **(rerank_options or {}))
            for result, value in zip(results, raw):
                result["rerank_score"] = float(value)
                result["score"] = sigmoid(float(value))
            results.sort(key=lambda r: (-r["rerank_score"], r["dense_rank"]))
        timer.ms.setdefault("rerank", 0.0)
        timer.ms["total"] = (time.perf_counter() - started) * 1000
        return {
            "collection": collection_name,
            "query": query,
            "results": results[:top_k],
            "reranked": model is not None,
            "reranker": (reranker or self.rerankers.default) if model is not None else None,
            "timings_ms": {k: round(v, 3) for k, v in timer.ms.items()},
        }
