"""Queries and changes on collections, documents and chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from search_service.errors import (
    ConflictError,
    DimensionMismatchError,
    InvalidRequestError,
    NotFoundError,
)
from search_service.model_names import display_name
from search_service.store.models import Chunk, Collection, Document
from search_service.store.vectors import (
    VectorLayout,
    drop_collection_index,
    prepare_collection,
    write_vectors,
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidRequestError(
            "collection names are 1-64 characters: letters, digits, '_', '-' and '.', "
            "starting with a letter or digit",
            code="invalid_collection_name",
        )
    return name


def get_collection(session: Session, name: str) -> Collection:
    collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise NotFoundError(f"collection {name!r} does not exist", code="collection_not_found")
    return collection


def find_collection(session: Session, name: str) -> Collection | None:
    return session.scalar(select(Collection).where(Collection.name == name))


def create_collection(
    session: Session,
    name: str,
    *,
    embedder_model: str,
    dimension: int,
    chunk_tokens: int,
    chunk_overlap: int,
) -> Collection:
    validate_collection_name(name)
    if find_collection(session, name) is not None:
        raise ConflictError(f"collection {name!r} already exists", code="collection_exists")
    collection = Collection(
        name=name,
        embedder_model=embedder_model,
        dimension=dimension,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
        vector_version=0,
    )
    session.add(collection)
    try:
        session.flush()
    except IntegrityError:  # a concurrent create won the race
        session.rollback()
        raise ConflictError(
            f"collection {name!r} already exists", code="collection_exists"
        ) from None
    # the backend the process is configured for (Database(new_collections=...)), recorded for good
    prepare_collection(session, collection, session.info.get("vector_layout") or VectorLayout())
    return collection


def list_collections(session: Session) -> list[tuple[Collection, int, int]]:
    """Each collection with its document and chunk counts."""
    documents = (
        select(Document.collection_id, func.count().label("n"))
        .group_by(Document.collection_id)
        .subquery()
    )
    chunks = (
        select(Chunk.collection_id, func.count().label("n"))
        .group_by(Chunk.collection_id)
        .subquery()
    )
    rows = session.execute(
        select(Collection, func.coalesce(documents.c.n, 0), func.coalesce(chunks.c.n, 0))
        .outerjoin(documents, documents.c.collection_id == Collection.id)
        .outerjoin(chunks, chunks.c.collection_id == Collection.id)
        .order_by(Collection.name)
    ).all()
    return [(row[0], int(row[1]), int(row[2])) for row in rows]


def collection_counts(session: Session, collection: Collection) -> tuple[int, int]:
    documents = session.scalar(select(func.count()).where(Document.collection_id == collection.id))
    chunks = session.scalar(select(func.count()).where(Chunk.collection_id == collection.id))
    return int(documents or 0), int(chunks or 0)


def get_document(session: Session, collection: Collection, external_id: str) -> Document:
    document = find_document(session, collection, external_id)
    if document is None:
        raise NotFoundError(
            f"document {external_id!r} does not exist in collection {collection.name!r}",
            code="document_not_found",
        )
    return document


def find_document(session: Session, collection: Collection, external_id: str) -> Document | None:
    return session.scalar(
        select(Document).where(
            Document.collection_id == collection.id, Document.external_id == external_id
        )
    )


def list_documents(
    session: Session, collection: Collection, *, limit: int, offset: int
) -> tuple[list[Document], int]:
    total = session.scalar(select(func.count()).where(Document.collection_id == collection.id))
    documents = session.scalars(
        select(Document)
        .where(Document.collection_id == collection.id)
        .order_by(Document.external_id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(documents), int(total or 0)


def replace_chunks(
    session: Session,
    collection: Collection,
    document: Document,
    chunks: list[dict],
    vectors: np.ndarray,
) -> None:
    """Swap a document's chunks for new ones, in the caller's transaction, and bump the version."""
    lock_collection(session, collection)
    if len(chunks) != len(vectors):
        raise ValueError("one vector per chunk is required")
    if len(vectors) and vectors.shape[1] != collection.dimension:
        raise DimensionMismatchError(
            f"collection {collection.name!r} holds {collection.dimension}-dimensional vectors "
            f"(embedder {display_name(collection.embedder_model)}); got {vectors.shape[1]}-dimensional ones"
        )
    if document.id is not None:
        session.execute(delete(Chunk).where(Chunk.document_id == document.id))
    session.flush()
    rows = [
        Chunk(
            document_id=document.id,
            collection_id=collection.id,
            embedding=np.asarray(vector, dtype="<f4").tobytes(),
            **chunk,
        )
        for chunk, vector in zip(chunks, vectors)
    ]
    session.add_all(rows)
    if collection.vector_backend == "pgvector":
        session.flush()  # the chunk ids
        write_vectors(session, collection, [row.id for row in rows], vectors)
    bump_version(session, collection)


def lock_collection(session: Session, collection: Collection) -> None:
    """Take the collection's row lock before writing any of its contents (PostgreSQL; SQLite has
    one writer at a time anyway). Every writer (a worker's commit, a delete over HTTP) takes this
    lock first, so two of them queue instead of deadlocking on each other's chunk rows."""
    # FOR NO KEY UPDATE: writers queue on it, while inserting a document or chunk (which takes
    # FOR KEY SHARE on the collection through the foreign key) never waits for it or blocks it.
    session.execute(select(Collection.id).where(Collection.id == collection.id).with_for_update(key_share=True))


def bump_version(session: Session, collection: Collection) -> None:
    session.execute(
        update(Collection)
        .where(Collection.id == collection.id)
        .values(vector_version=Collection.vector_version + 1)
    )
    session.flush()
    session.refresh(collection)


@dataclass(frozen=True, slots=True)
class CandidateChunk:
    """The columns a search result reads of a chunk (not its vector or sparse weights)."""

    id: int
    text: str
    char_start: int
    char_end: int
    ordinal: int
    meta: dict


@dataclass(frozen=True, slots=True)
class CandidateDocument:
    external_id: str
    source: str | None
    meta: dict


# Built once: the candidates' columns (not the vectors or sparse weights), by an expanding IN.
_CANDIDATES = (
    select(
        Chunk.id,
        Chunk.text,
        Chunk.char_start,
        Chunk.char_end,
        Chunk.ordinal,
        Chunk.meta,
        Chunk.document_id,
        Document.external_id,
        Document.source,
        Document.meta,
    )
    .join(Document, Chunk.document_id == Document.id)
    .where(Chunk.id.in_(bindparam("ids", expanding=True)))
    .where(Chunk.collection_id == bindparam("collection_id"))
)


def chunks_by_id(
    session: Session, collection: Collection, ids: list[int]
) -> dict[int, tuple[CandidateChunk, CandidateDocument]]:
    """The candidates' rows by chunk id: plain columns through one prebuilt statement, no ORM
    objects (a search's whole database time is a few of these rows)."""
    if not ids:
        return {}
    rows = session.execute(_CANDIDATES, {"ids": list(ids), "collection_id": collection.id})
    documents: dict[int, CandidateDocument] = {}
    found = {}
    for (
        chunk_id,
        text,
        start,
        end,
        ordinal,
        meta,
        document_id,
        external_id,
        source,
        doc_meta,
    ) in rows:
        document = documents.get(document_id)
        if document is None:
            document = documents[document_id] = CandidateDocument(
                external_id, source, doc_meta or {}
            )
        found[chunk_id] = (
            CandidateChunk(chunk_id, text, start, end, ordinal, meta or {}),
            document,
        )
    return found


def delete_document(session: Session, collection: Collection, external_id: str) -> None:
    """Remove a document with its chunks and vectors; the version bump tells index caches."""
    lock_collection(session, collection)
    document = get_document(session, collection, external_id)
    session.execute(delete(Chunk).where(Chunk.document_id == document.id))
    session.execute(delete(Document).where(Document.id == document.id))
    bump_version(session, collection)


def delete_collection(session: Session, collection: Collection) -> None:
    """Remove a collection and everything in it; its unfinished jobs end `cancelled` and its
    jobs stay readable by id (`store.jobs.detach_collection_jobs`)."""
    from search_service.store.jobs import detach_collection_jobs

    lock_collection(session, collection)
    detach_collection_jobs(session, collection)
    for model in (Chunk, Document):
        session.execute(delete(model).where(model.collection_id == collection.id))
    session.execute(delete(Collection).where(Collection.id == collection.id))
    if collection.vector_backend == "pgvector":  # its rows went with the chunks; its index goes too
        drop_collection_index(session, collection.id)


def matching_chunk_ids(session: Session, collection: Collection, document_filter) -> list[int]:
    """Ids of the collection's chunks whose document passes `document_filter(document)`."""
    rows = session.execute(
        select(Document.id, Document.external_id, Document.source, Document.meta).where(
            Document.collection_id == collection.id
        )
    ).all()
    documents = [row[0] for row in rows if document_filter(row[1], row[2], row[3] or {})]
    ids: list[int] = []
    for start in range(0, len(documents), 1000):
        ids.extend(
            session.scalars(
                select(Chunk.id).where(Chunk.document_id.in_(documents[start : start + 1000]))
            ).all()
        )
    return ids
