"""SQLAlchemy 2.x models. The database is the source of truth; FAISS indexes are caches of it.

Tables are created only by the Alembic migrations in `migrations/`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that always comes back timezone-aware, in UTC.

    SQLite keeps no offset (a stored value reads back naive) while PostgreSQL does; without this,
    the same field would render as ISO 8601 with `+00:00` on one database and without on the other.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def new_job_id() -> str:
    return str(uuid.uuid4())


# Integer ids as BIGINT on PostgreSQL, INTEGER (rowid alias, autoincrement) on SQLite.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


# AUTOINCREMENT on SQLite: ids of deleted rows are never reused, so an id cached in a FAISS index
# of another process can never point at a different chunk, document or collection.
AUTOINCREMENT = {"sqlite_autoincrement": True}


class Collection(Base):
    __tablename__ = "collections"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    embedder_model: Mapped[str] = mapped_column(String(512))
    dimension: Mapped[int] = mapped_column(Integer)
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    # Bumped in the same transaction as every change to the collection's chunks, so index
    # caches in other processes know when to catch up.
    vector_version: Mapped[int] = mapped_column(Integer, default=0)
    # Where the vectors are searched (store/vectors.py): faiss (in-memory caches) or pgvector
    # (`chunk_vectors` + an HNSW index); `vector_type` is pgvector's vector or halfvec. Recorded at
    # creation from RAG_VECTOR_BACKEND; only `search-service move-collection` changes it.
    vector_backend: Mapped[str] = mapped_column(String(16), default="faiss", server_default="faiss")
    vector_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    documents: Mapped[list[Document]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", passive_deletes=True
    )


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "external_id"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str] = mapped_column(String(1024))
    source: Mapped[str | None] = mapped_column(String(1024))
    content_hash: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="indexed")
    text_length: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )

    collection: Mapped[Collection] = relationship(back_populates="documents")
    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Chunk.ordinal",
    )


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "ordinal"),
        Index("ix_chunks_collection_id_id", "collection_id", "id"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    # Denormalised so an index can be rebuilt or caught up with one indexed range scan.
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    token_count: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    # Lexical weights {token_id: weight} from a sparse head (bge-m3), when the embedder has one.
    sparse: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    document: Mapped[Document] = relationship(back_populates="chunks")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_job_id)
    # NULL once the collection is deleted: the job stays, `cancelled`, under its kept name.
    collection_id: Mapped[int | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    collection_name: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    kind: Mapped[str] = mapped_column(String(16))  # "file" or "documents"
    filename: Mapped[str | None] = mapped_column(String(1024))
    content_type: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(1024))
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(Text)  # "slug: message", never SQL, paths or traces
    error_code: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A worker holds a job while its lease is in the future and renews it by heartbeat; a job whose
    # lease ran out (the worker died) is claimed again, up to the maximum number of attempts.
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A transiently failed job waits for its back-off: not claimed before this time.
    run_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    request_id: Mapped[str | None] = mapped_column(String(128))  # the upload's X-Request-ID
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    collection: Mapped[Collection] = relationship()


class ApiKey(Base):
    """An API key: only a hash of the secret is stored; role and collections bound what it may do."""

    __tablename__ = "api_keys"
    __table_args__ = (AUTOINCREMENT,)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # shown in lists, finds the row
    key_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # read | write | admin
    collections: Mapped[list] = mapped_column(JSON, default=list)  # names; ["*"] = all
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


JOB_STATES = ("pending", "parsing", "embedding", "indexed", "indexed_with_errors", "failed", "cancelled")
FINAL_JOB_STATES = ("indexed", "indexed_with_errors", "failed", "cancelled")
