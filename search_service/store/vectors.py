"""Vectors in PostgreSQL (pgvector): the `chunk_vectors` table, its per-collection HNSW indexes,
and which backend a new collection gets.

Every chunk keeps its float32 embedding in `chunks.embedding` whatever the backend (that is what
FAISS rebuilds from and what `move_collection` copies). A pgvector collection also has one
`chunk_vectors` row per chunk, written in the transaction that writes the chunk and removed with
it (ON DELETE CASCADE), so every process sees the same vectors at once.

`chunk_vectors.embedding` is an untyped `vector` because collections differ in dimension; each
pgvector collection gets its own partial HNSW index on `embedding::vector(d)` (or
`::halfvec(d)`, half the index memory) `WHERE collection_id = <id>`, inner product, created when
the collection is. The extension and the table come from the Alembic migration
(`ensure_pgvector_schema`); the per-collection index is the one piece of DDL issued at run time,
because the dimension is only known when the collection is created.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from search_service.errors import ConfigurationError

BACKENDS = ("faiss", "pgvector")
PGVECTOR_TYPES = ("vector", "halfvec")
WRITE_BATCH = 1000

metadata = MetaData()
_table: Table | None = None


def require_pgvector():
    """The `pgvector` package (an extra: `pip install 'search-service[pgvector]'`), or a clear error."""
    try:
        import pgvector.sqlalchemy
    except ImportError as exc:
        raise ConfigurationError(
            "RAG_VECTOR_BACKEND=pgvector needs the pgvector package: pip install 'search-service[pgvector]'"
        ) from exc
    return pgvector


def chunk_vectors() -> Table:
    """`chunk_vectors`, outside the ORM models' metadata: it exists only where pgvector is set up."""
    global _table
    if _table is None:
        vector_type = require_pgvector().sqlalchemy.VECTOR
        _table = Table(
            "chunk_vectors",
            metadata,
            Column("chunk_id", BigInteger, primary_key=True),
            Column("collection_id", BigInteger, nullable=False),
            Column("embedding", vector_type(), nullable=False),
        )
    return _table


# What `ensure_pgvector_schema` creates (the migration's pgvector part); the rows go with their
# chunk or collection (ON DELETE CASCADE).
SCHEMA = (
    ("CREATE TABLE IF NOT EXISTS chunk_vectors ("
    " chunk_id BIGINT PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,"
    " collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"
    " embedding vector NOT NULL)"),
    "CREATE INDEX IF NOT EXISTS ix_chunk_vectors_collection_id ON chunk_vectors (collection_id)",
)


@dataclass(frozen=True)
class VectorLayout:
    """What a new collection gets (RAG_VECTOR_BACKEND, RAG_PGVECTOR_*); recorded on the collection."""

    backend: str = "faiss"
    pgvector_type: str = "vector"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64

    @classmethod
    def from_settings(cls, settings) -> VectorLayout:
        return cls(
            settings.vector_backend,
            settings.pgvector_type,
            settings.pgvector_hnsw_m,
            settings.pgvector_ef_construction,
        )


EXTENSION_FIX = (
    "the pgvector extension is not installed in this database and this role may not create it: "
    "connect to this database once as a superuser and run `CREATE EXTENSION vector;` (owning "
    "the database is not enough), then run `search-service migrate` again; or keep "
    "RAG_VECTOR_BACKEND=faiss"
)


def ensure_pgvector_schema(connection: Connection) -> None:
    """The extension and `chunk_vectors`, if missing (idempotent; PostgreSQL only)."""
    if connection.dialect.name != "postgresql":
        raise ConfigurationError(
            "RAG_VECTOR_BACKEND=pgvector needs PostgreSQL (RAG_DATABASE_URL=postgresql+psycopg://...); "
            f"this database is {connection.dialect.name}"
        )
    present = connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).scalar()
    if not present:
        try:
            with connection.begin_nested():
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except DBAPIError as exc:
            raise ConfigurationError(f"{EXTENSION_FIX} ({exc.orig})") from exc
    for statement in SCHEMA:
        connection.execute(text(statement))


def pgvector_ready(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return False
    return bool(session.execute(text("SELECT to_regclass('chunk_vectors') IS NOT NULL")).scalar())


def index_name(collection_id: int) -> str:
    return f"ix_chunk_vectors_hnsw_{int(collection_id)}"


def typed(collection) -> str:
    """The expression the collection's HNSW index is built on (and searches must order by)."""
    kind = collection.vector_type or "vector"
    return f"embedding::{kind}({int(collection.dimension)})"


def create_collection_index(session: Session, collection, layout: VectorLayout) -> None:
    kind = collection.vector_type or "vector"
    session.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {index_name(collection.id)} ON chunk_vectors "
            f"USING hnsw (({typed(collection)}) {kind}_ip_ops) "
            f"WITH (m = {int(layout.hnsw_m)}, ef_construction = {int(layout.hnsw_ef_construction)}) "
            f"WHERE collection_id = {int(collection.id)}"
        )
    )


def drop_collection_index(session: Session, collection_id: int) -> None:
    session.execute(text(f"DROP INDEX IF EXISTS {index_name(collection_id)}"))


def prepare_collection(session: Session, collection, layout: VectorLayout) -> None:
    """Record the layout's backend on a new collection; pgvector: check the schema, add its index."""
    if layout.backend not in BACKENDS:
        raise ConfigurationError(f"RAG_VECTOR_BACKEND must be {' or '.join(BACKENDS)}, got {layout.backend!r}")
    collection.vector_backend = layout.backend
    collection.vector_type = layout.pgvector_type if layout.backend == "pgvector" else None
    if layout.backend == "pgvector":
        if not pgvector_ready(session):
            raise ConfigurationError(
                "RAG_VECTOR_BACKEND=pgvector but this database has no chunk_vectors table: run "
                "`RAG_VECTOR_BACKEND=pgvector search-service migrate` on PostgreSQL first"
            )
        session.flush()
        create_collection_index(session, collection, layout)


def write_vectors(session: Session, collection, ids: list[int], vectors: np.ndarray) -> None:
    """pgvector collections: the chunks' rows in `chunk_vectors` (same transaction as the chunks)."""
    if collection.vector_backend != "pgvector" or not len(ids):
        return
    vectors = np.asarray(vectors, dtype=np.float32)
    for start in range(0, len(ids), WRITE_BATCH):
        session.execute(
            insert(chunk_vectors()),
            [
                {"chunk_id": int(i), "collection_id": collection.id, "embedding": v}
                for i, v in zip(ids[start : start + WRITE_BATCH], vectors[start : start + WRITE_BATCH])
            ],
        )


def move_collection(session: Session, collection, layout: VectorLayout) -> int:
    """Move a collection to `layout.backend` (the explicit command; nothing moves silently).

    To pgvector: copy every chunk's embedding into `chunk_vectors`, then build its HNSW index
    (faster than growing it row by row). To FAISS: drop the rows and the index; each process
    builds its FAISS index from `chunks.embedding` on first use. The version bump tells every
    process. Returns the number of vectors moved."""
    from search_service.store.collections import bump_version, lock_collection
    from search_service.store.models import Chunk

    if layout.backend not in BACKENDS:
        raise ConfigurationError(f"the backend must be {' or '.join(BACKENDS)}, got {layout.backend!r}")
    lock_collection(session, collection)
    wanted_type = layout.pgvector_type if layout.backend == "pgvector" else None
    if collection.vector_backend == layout.backend and collection.vector_type == wanted_type:
        return 0
    moved = 0
    if collection.vector_backend == "pgvector":
        table = chunk_vectors()
        session.execute(table.delete().where(table.c.collection_id == collection.id))
        drop_collection_index(session, collection.id)
    collection.vector_backend = layout.backend
    collection.vector_type = wanted_type
    session.flush()
    if layout.backend == "pgvector":
        ensure_pgvector_schema(session.connection())
        rows = session.execute(
            select(Chunk.id, Chunk.embedding).where(Chunk.collection_id == collection.id).order_by(Chunk.id)
        ).yield_per(WRITE_BATCH)
        for batch in rows.partitions():
            ids = [row[0] for row in batch]
            vectors = np.frombuffer(b"".join(row[1] for row in batch), dtype="<f4").reshape(len(ids), -1)
            write_vectors(session, collection, ids, vectors)
            moved += len(ids)
        create_collection_index(session, collection, layout)
    else:
        moved = int(session.scalar(select(func.count()).where(Chunk.collection_id == collection.id)) or 0)
    bump_version(session, collection)
    return moved
