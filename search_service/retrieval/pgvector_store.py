"""The pgvector backend: vectors searched inside PostgreSQL, nothing held by the process.

A chunk committed by any worker is in the next query of every replica; a deleted one is gone
at once (its `chunk_vectors` row goes with it); nothing is built at start-up.

- Unfiltered, or a filter allowing more than `flat_max` chunks: the collection's HNSW index
  (inner product, `hnsw.ef_search`), with pgvector 0.8's iterative scans
  (`hnsw.iterative_scan`, default `relaxed_order`) so a filter that rejects most of what the
  graph visits keeps scanning until k allowed rows are found. Relaxed order is re-sorted here.
- A filter allowing at most `flat_max` chunks: exact, a plain scan of the allowed rows (a
  materialized CTE, so the planner cannot answer it from the HNSW index).
- A search that comes back short of min(k, allowed) falls back to exact, as FAISS does.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from search_service.retrieval.vector_store import Hits, VectorStore, check_dimension
from search_service.store.models import Collection
from search_service.store.vectors import (
    VectorLayout,
    chunk_vectors,
    create_collection_index,
    drop_collection_index,
    require_pgvector,
    typed,
)

ITERATIVE_SCANS = ("off", "strict_order", "relaxed_order")


def as_text(vector: np.ndarray, kind: str = "vector") -> str:
    """pgvector's text form of a query vector (`[0.1,0.2,...]`), as `vector` or `halfvec`."""
    pgvector = require_pgvector()
    values = np.asarray(vector, dtype=np.float32)
    return (pgvector.HalfVector(values) if kind == "halfvec" else pgvector.Vector(values)).to_text()


# One round trip before an approximate search, local to the transaction. The planner is told to
# take the HNSW index: for a broad filter it would otherwise pick the primary key (fetch and sort
# every allowed row: exact but slow, 186 ms for 10k rows at 1,024 dimensions) over the index scan
# whose iterative scan applies the filter. Custom plans keep `chunk_id = ANY(:ids)` a constant
# array, which PostgreSQL hashes (a generic plan's parameter is searched linearly per row).
SEARCH_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', :ef, true), set_config('hnsw.iterative_scan', :scan, true), "
    "set_config('hnsw.max_scan_tuples', :tuples, true), set_config('enable_sort', 'off', true), "
    "set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true)"
)
RESET_PLANNER = (
    "SELECT set_config(name, reset_val, true) FROM pg_settings "
    "WHERE name IN ('enable_sort', 'enable_seqscan', 'enable_bitmapscan', 'plan_cache_mode')"
)


def _where(collection: Collection, filtered: bool) -> str:
    # the id is written into the statement, not bound: the planner matches a partial index's
    # `WHERE collection_id = <id>` only against a literal of its type (psycopg binds 1 as int2)
    return f"collection_id = {int(collection.id)}" + (" AND chunk_id = ANY(:ids)" if filtered else "")


def approximate_sql(collection: Collection, filtered: bool) -> str:
    """Ordered by the expression the collection's HNSW index is built on, so the index answers it."""
    kind = collection.vector_type or "vector"
    return (
        f"SELECT chunk_id, {typed(collection)} <#> CAST(:q AS {kind}({int(collection.dimension)})) AS distance "
        f"FROM chunk_vectors WHERE {_where(collection, filtered)} ORDER BY distance LIMIT :k"
    )


def exact_sql(collection: Collection, filtered: bool) -> str:
    """The allowed rows materialized first, then scored: no index can answer it approximately."""
    return (
        f"WITH allowed AS MATERIALIZED (SELECT chunk_id, embedding FROM chunk_vectors WHERE {_where(collection, filtered)}) "
        "SELECT chunk_id, embedding <#> CAST(:q AS vector) AS distance FROM allowed "
        "ORDER BY distance, chunk_id LIMIT :k"
    )


class PgvectorStore(VectorStore):
    name = "pgvector"

    def __init__(self, *, flat_max: int = 100_000, ef_search: int = 200, iterative_scan: str = "relaxed_order", max_scan_tuples: int = 20_000, layout: VectorLayout | None = None):
        if iterative_scan not in ITERATIVE_SCANS:
            raise ValueError(f"hnsw.iterative_scan must be one of {', '.join(ITERATIVE_SCANS)}, got {iterative_scan!r}")
        self.flat_max = flat_max
        self.ef_search = ef_search
        self.iterative_scan = iterative_scan
        self.max_scan_tuples = max_scan_tuples
        self.layout = layout or VectorLayout(backend="pgvector")

    @classmethod
    def from_settings(cls, settings) -> PgvectorStore:
        return cls(
            flat_max=settings.index_flat_max,
            ef_search=settings.pgvector_ef_search,
            iterative_scan=settings.pgvector_iterative_scan,
            layout=VectorLayout.from_settings(settings),
        )

    def search(self, session: Session, collection: Collection, vector: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> Hits:
        check_dimension(collection, vector)
        if k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return []
        ids = None if allowed_ids is None else [int(i) for i in allowed_ids]
        if ids is not None and len(ids) <= self.flat_max:
            return self.exact(session, collection, vector, k, ids)
        hits = self.approximate(session, collection, vector, k, ids)
        if len(hits) < k and len(hits) < (self.count(session, collection) if ids is None else len(ids)):
            return self.exact(session, collection, vector, k, ids)
        return hits

    def approximate(self, session: Session, collection: Collection, vector: np.ndarray, k: int, ids: list[int] | None) -> Hits:
        """The HNSW index, with an iterative scan under a filter (settings local to the transaction)."""
        session.execute(text(SEARCH_SETTINGS), {"ef": str(max(self.ef_search, k)), "scan": self.iterative_scan, "tuples": str(self.max_scan_tuples)})
        rows = session.execute(
            text(approximate_sql(collection, ids is not None)),
            {"q": as_text(vector, collection.vector_type or "vector"), "ids": ids, "k": k},
        ).all()
        session.execute(text(RESET_PLANNER))  # the rest of the caller's transaction plans as usual
        return sorted(((int(i), -float(d)) for i, d in rows), key=lambda hit: (-hit[1], hit[0]))

    def exact(self, session: Session, collection: Collection, vector: np.ndarray, k: int, ids: list[int] | None) -> Hits:
        """Every allowed row scored in full precision: the true top k."""
        rows = session.execute(
            text(exact_sql(collection, ids is not None)),
            {"q": as_text(vector), "ids": ids, "k": k},
        ).all()
        return [(int(i), -float(d)) for i, d in rows]

    def count(self, session: Session, collection: Collection) -> int:
        return int(session.scalar(select(func.count()).where(chunk_vectors().c.collection_id == collection.id)) or 0)

    def rebuild(self, session: Session, collection: Collection) -> str:
        """Drop and build the collection's HNSW index again (with the current m, ef_construction)."""
        drop_collection_index(session, collection.id)
        create_collection_index(session, collection, self.layout)
        return f"pgvector HNSW index rebuilt ({self.count(session, collection)} vectors, m={self.layout.hnsw_m})"
