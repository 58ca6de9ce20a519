"""The query path: candidates (dense, sparse or both fused), rerank, threshold, top-k, context.

- `dense`: the query embedding's `candidates` nearest chunks (FAISS or pgvector, `retrieval.vector_store`).
- `sparse`: the `candidates` best chunks by lexical weights or BM25 (`retrieval.sparse`).
- `hybrid`: both lists fused (`retrieval.fusion`: RRF k=60, or weighted normalized scores) and cut
  to `candidates`.

The candidates are reranked (scores cached, `retrieval.rerank_cache`), passages whose `score` is
below `score_threshold` are dropped, and the `top_k` best returned, each explaining itself (rank,
dense/sparse rank and score, fused score, rerank score). With `context_budget_tokens` the
response also carries the packed, cited context (`retrieval.context`). `score` is the sigmoid of
the rerank logit, else the fused score (hybrid), the sparse score (sparse) or the cosine (dense).
`timings_ms` holds each stage's milliseconds and, when the search reranked,
`rerank_cache_hit_rate` (also in `cache`, with the hit and miss counts).

Rerank fusion (`rerank_fusion`, default `RAG_RERANK_FUSION_DENSE_WEIGHT`): with a dense weight
w > 0, a reranked search orders by `(1 - w) * z(rerank logit) + w * z(first-stage score)`, z-scores
over the query's reranked candidates (`retrieval.fusion.rerank_fusion_scores`); `score` and
`rerank_fusion_score` are then that value, and the response's `rerank_fusion` names the weights
and the first-stage score used (`dense_score`, `sparse_score` or hybrid's `fusion_score`).
With w = 0 nothing is fused: the reranker's order and sigmoid scores, exactly as without it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from search_service.errors import InvalidRequestError, NotFoundError
from search_service.rerankers.base import sigmoid
from search_service.retrieval.context import ContextTokenizers, pack_context
from search_service.retrieval.fusion import (
    Fusion,
    check_rerank_fusion_weight,
    describe_rerank_fusion,
    fuse,
    rerank_fusion_scores,
)
from search_service.retrieval.rerank_cache import RerankCache, score_with_cache
from search_service.retrieval.sparse import SparseIndexManager
from search_service.retrieval.vector_store import VectorStore
from search_service.store import collections as store
from search_service.store.db import Database

MODES = ("dense", "sparse", "hybrid")


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
    """The loaded rerankers by name; `default` is used when a request names none.

    A request may also name a reranker by an alias (`model_names.py`: `rerank-v3.5` and the other
    names clients send by default, `RAG_MODEL_ALIASES`) or by the id/path it was loaded from."""

    rerankers: dict
    default: str | None
    aliases: dict = field(default_factory=dict)  # alias -> name

    def pick(self, name: str | None):
        if not self.rerankers:
            raise InvalidRequestError(
                "no reranker is loaded (RAG_RERANKER_MODEL=none): start the server with "
                "RAG_RERANKER_MODEL or RAG_RERANKERS naming a reranker (hub id or local directory)",
                code="reranker_not_configured",
            )
        return self.rerankers[self.resolve(name)]

    def resolve(self, name: str | None) -> str | None:
        """The loaded name a requested name means (None: the default's)."""
        if name is None or name in self.rerankers:
            return self.default if name is None else name
        if name in self.aliases:
            return self.aliases[name]
        for loaded, reranker in self.rerankers.items():
            if getattr(reranker, "name", None) == name:  # the id or path it was loaded from
                return loaded
        aliases = f"; aliases: {', '.join(sorted(self.aliases))}" if self.aliases else ""
        raise NotFoundError(
            f"reranker {name!r} is not loaded; loaded: {', '.join(sorted(self.rerankers))}{aliases}",
            code="reranker_not_found",
        )


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidRequestError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", code="invalid_mode")
    return mode


def _fusion(fusion) -> Fusion:
    if fusion is None:
        return Fusion()
    if isinstance(fusion, Fusion):
        return fusion
    return Fusion(**{key: value for key, value in dict(fusion).items() if value is not None})


class SearchPipeline:
    def __init__(
        self,
        database: Database,
        embedder,
        indexes: VectorStore,
        rerankers: RerankerSet,
        *,
        sparse: SparseIndexManager | None = None,
        rerank_cache: RerankCache | None = None,
        context_tokenizers: ContextTokenizers | None = None,
        context_tokenizers_allowed: tuple[str, ...] = (),
        default_mode: str = "dense",
        default_rerank_fusion_weight: float = 0.0,
    ):
        self.database = database
        self.embedder = embedder
        self.indexes = indexes
        self.rerankers = rerankers
        self.sparse = sparse if sparse is not None else SparseIndexManager()
        self.rerank_cache = rerank_cache if rerank_cache is not None else RerankCache()
        # `context_tokenizer` may name the embedder's, a loaded reranker's, or an allowed one only
        self.context_tokenizers = context_tokenizers or ContextTokenizers.for_models(
            embedder, rerankers.rerankers, context_tokenizers_allowed
        )
        self.default_mode = check_mode(default_mode)
        self.default_rerank_fusion_weight = check_rerank_fusion_weight(default_rerank_fusion_weight)

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
        mode: str | None = None,
        fusion: Fusion | dict | None = None,
        sparse_method: str | None = None,
        score_threshold: float | None = None,
        context_budget_tokens: int | None = None,
        context_tokenizer: str | None = None,
        rerank_fusion: float | dict | None = None,
    ) -> dict:
        """`document_filter(external_id, source, metadata) -> bool` restricts the candidates of
        every mode; `fusion` is a `Fusion` or a dict of its fields (hybrid only);
        `rerank_fusion` is the dense weight (or `{"dense_weight": w}`) of a reranked search,
        None for the default."""
        timer = Timer()
        started = time.perf_counter()
        mode = check_mode(mode or self.default_mode)
        method = self.sparse.resolve(sparse_method) if mode != "dense" else None
        fusion = _fusion(fusion) if mode == "hybrid" else None
        fusion_weight = (self.default_rerank_fusion_weight if rerank_fusion is None
                         else check_rerank_fusion_weight(rerank_fusion))
        if rerank is None:  # null: rerank when a reranker is loaded (or one is named)
            rerank = bool(self.rerankers.rerankers) or reranker is not None
        if rerank and not self.rerankers.rerankers:
            raise InvalidRequestError(
                "rerank: true needs a reranker and none is loaded (RAG_RERANKER_MODEL=none); leave "
                "rerank out to search without one, or start the server with RAG_RERANKER_MODEL set",
                code="reranker_not_configured",
            )
        use_reranker = rerank
        model = self.rerankers.pick(reranker) if use_reranker else None
        reranker_name = self.rerankers.resolve(reranker) if model is not None else None
        counter = self.context_tokenizers.counter(context_tokenizer) if context_budget_tokens else None
        candidates = max(candidates, top_k)
        with self.database.session() as session:
            with timer.stage("db"):
                collection = store.get_collection(session, collection_name)
                allowed = None
                if document_filter is not None:
                    allowed = np.array(store.matching_chunk_ids(session, collection, document_filter), dtype=np.int64)
            dense_hits, sparse_hits = [], []
            if mode != "sparse":
                with timer.stage("embed"):
                    vector = self.embedder.embed([query], kind="query")[0]
                with timer.stage("search"):
                    dense_hits = self.indexes.search(session, collection, vector, candidates, allowed)
            if mode != "dense":
                with timer.stage("sparse"):
                    terms = self.sparse.query_terms(method, query)
                    sparse_hits = self.sparse.search(session, collection, method, terms, candidates, allowed)
            with timer.stage("fusion"):
                ranked = self._candidates(mode, dense_hits, sparse_hits, fusion)[:candidates]
            with timer.stage("db"):
                rows = store.chunks_by_id(session, collection, [chunk_id for chunk_id, _ in ranked])
        results = self._results(mode, ranked, rows, dense_hits, sparse_hits)
        hits = misses = 0
        if model is not None and results:
            with timer.stage("rerank"):
                raw, hits, misses = score_with_cache(
                    self.rerank_cache, model, reranker_name, query, [r["text"] for r in results], rerank_options
                )
            first_stage = [result["score"] for result in results]
            for position, (result, value) in enumerate(zip(results, raw)):
                result.update(rerank_score=value, score=sigmoid(value), _order=position)
            if fusion_weight > 0:
                for result, value in zip(results, rerank_fusion_scores(raw, first_stage, fusion_weight)):
                    result.update(score=float(value), rerank_fusion_score=float(value))
                results.sort(key=lambda r: (-r["rerank_fusion_score"], r["_order"]))
            else:
                results.sort(key=lambda r: (-r["rerank_score"], r["_order"]))
        for rank, result in enumerate(results, start=1):
            result.pop("_order", None)
            result["rank"] = rank
        results = results[:top_k]
        if score_threshold is not None:
            results = [r for r in results if r["score"] >= score_threshold]
        context = None
        if counter is not None:
            name, count, prefix = counter
            with timer.stage("context"):
                context = {"tokenizer": name, "budget_tokens": context_budget_tokens,
                           **pack_context(results, context_budget_tokens, count, prefix)}
        for stage in ("embed", "search", "sparse", "rerank"):
            timer.ms.setdefault(stage, 0.0)
        timer.ms["total"] = (time.perf_counter() - started) * 1000
        timings = {k: round(v, 3) for k, v in timer.ms.items()}
        hit_rate = round(hits / (hits + misses), 6) if hits + misses else None
        if hit_rate is not None:  # the search reranked: the share of scores the cache gave
            timings["rerank_cache_hit_rate"] = hit_rate
        return {
            "collection": collection_name,
            "query": query,
            "mode": mode,
            "sparse_method": method,
            "fusion": fusion.describe() if fusion is not None else None,
            "results": results,
            "reranked": model is not None,
            "rerank_fusion": describe_rerank_fusion(mode, fusion_weight) if model is not None else None,
            "reranker": reranker_name,
            "context": context,
            "cache": {
                "rerank_hits": hits,
                "rerank_misses": misses,
                "rerank_hit_rate": hit_rate,
            },
            "timings_ms": timings,
        }

    @staticmethod
    def _candidates(mode: str, dense_hits, sparse_hits, fusion: Fusion | None) -> list[tuple[int, float]]:
        if mode == "dense":
            return list(dense_hits)
        if mode == "sparse":
            return list(sparse_hits)
        return fuse(dense_hits, sparse_hits, fusion)

    @staticmethod
    def _results(mode: str, ranked, rows, dense_hits, sparse_hits) -> list[dict]:
        dense = {chunk_id: (rank, score) for rank, (chunk_id, score) in enumerate(dense_hits, start=1)}
        sparse = {chunk_id: (rank, score) for rank, (chunk_id, score) in enumerate(sparse_hits, start=1)}
        results = []
        for chunk_id, score in ranked:
            if chunk_id not in rows:  # deleted after the index snapshot was taken
                continue
            chunk, document = rows[chunk_id]
            dense_rank, dense_score = dense.get(chunk_id, (None, None))
            sparse_rank, sparse_score = sparse.get(chunk_id, (None, None))
            results.append(
                {
                    "chunk_id": chunk.id,
                    "document_id": document.external_id,
                    "source": document.source,
                    "text": chunk.text,
                    "start": chunk.char_start,
                    "end": chunk.char_end,
                    "ordinal": chunk.ordinal,
                    "metadata": dict(document.meta or {}),
                    "chunk_metadata": dict(chunk.meta or {}),
                    "score": float(score),
                    "rank": None,
                    "dense_rank": dense_rank,
                    "dense_score": dense_score,
                    "sparse_rank": sparse_rank,
                    "sparse_score": sparse_score,
                    "fusion_score": float(score) if mode == "hybrid" else None,
                    "rerank_score": None,
                    "rerank_fusion_score": None,
                }
            )
        return results
