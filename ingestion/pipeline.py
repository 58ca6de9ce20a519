"""parse -> chunk -> embed -> store -> index, shared by the CLI and the worker."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from tqdm.auto import tqdm

from ingestion.chunking import MIN_COLLECTION_CHUNK_TOKENS, Chunker, default_chunk_size
from ingestion.job_errors import CollectionGoneError
from ingestion.parsers import ParseError
from ingestion.prepare import ParseLimits, PreparedDocument, SourceDocument, chunk_rows, expand
from search_service.errors import DimensionMismatchError, InvalidRequestError
from search_service.model_names import display_name
from search_service.retrieval.vector_store import VectorStore
from search_service.store import collections as store
from search_service.store.db import Database
from search_service.store.models import Collection, Document

__all__ = ["IngestResult", "IngestionPipeline", "SourceDocument"]

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    external_id: str
    status: str  # added | updated | unchanged | failed
    chunks: int = 0
    error: str | None = None
    error_code: str | None = None


class IngestionPipeline:
    def __init__(self, database: Database, embedder, indexes: VectorStore, *, chunk_tokens=None, chunk_overlap=None, sparse_head=None, parse_limits: ParseLimits | None = None):
        self.database = database
        self.embedder = embedder
        self.indexes = indexes
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.parse_limits = parse_limits or ParseLimits()
        self.sparse_head = sparse_head  # bge-m3 lexical weights stored per chunk, when the embedder has the head

    def chunk_settings(self, chunk_tokens: int | None = None, chunk_overlap: int | None = None) -> tuple[int, int]:
        """Requested sizes, else the configured ones, else what the embedder can take untruncated."""
        limit = self.embedder.max_seq_length - self.embedder.num_special_tokens
        default_tokens, default_overlap = default_chunk_size(
            self.embedder.max_seq_length, self.embedder.num_special_tokens
        )
        tokens = chunk_tokens or self.chunk_tokens or default_tokens
        if tokens < MIN_COLLECTION_CHUNK_TOKENS:
            raise InvalidRequestError(
                f"chunk size {tokens} is below the minimum of {MIN_COLLECTION_CHUNK_TOKENS} tokens",
                code="invalid_chunk_size",
            )
        if tokens > limit:
            raise InvalidRequestError(
                f"chunk size {tokens} exceeds what {display_name(self.embedder.model_id)} embeds without truncation "
                f"({limit} tokens); choose at most {limit}",
                code="invalid_chunk_size",
            )
        overlap = chunk_overlap if chunk_overlap is not None else self.chunk_overlap
        if overlap is None:
            overlap = min(default_overlap, tokens // 4)
        if overlap > tokens // 2:
            raise InvalidRequestError(
                f"chunk overlap {overlap} must be at most half the chunk size {tokens} "
                f"({tokens // 2})", code="invalid_chunk_size"
            )
        return tokens, overlap

    def ensure_collection(self, session, name: str, chunk_tokens: int | None = None, chunk_overlap: int | None = None) -> Collection:
        collection = store.find_collection(session, name)
        if collection is None:
            tokens, overlap = self.chunk_settings(chunk_tokens, chunk_overlap)
            collection = store.create_collection(
                session,
                name,
                embedder_model=self.embedder.model_id,
                dimension=self.embedder.dimension,
                chunk_tokens=tokens,
                chunk_overlap=overlap,
            )
        self.check_compatible(collection)
        return collection

    def check_compatible(self, collection: Collection) -> None:
        if collection.dimension != self.embedder.dimension:
            raise DimensionMismatchError(
                f"collection {collection.name!r} was built with {display_name(collection.embedder_model)} "
                f"({collection.dimension} dimensions) but the configured embedder "
                f"{display_name(self.embedder.model_id)} produces {self.embedder.dimension}; use the same embedder "
                "or another collection"
            )
        if collection.embedder_model != self.embedder.model_id:
            log.warning(
                "collection %s was built with %s, the configured embedder is %s (same dimension)",
                collection.name, collection.embedder_model, self.embedder.model_id,
            )

    def ingest(
        self,
        collection_name: str,
        documents: Sequence[SourceDocument],
        *,
        progress: bool = False,
        on_stage: Callable[[str], None] | None = None,
        finalize: Callable[[object, list[IngestResult]], None] | None = None,
        collection_id: int | None = None,
        writes_around: Callable[[object], tuple[set[str], set[str]]] | None = None,
    ) -> list[IngestResult]:
        """Ingest `documents`; unchanged ones are skipped, failed ones reported, not raised.

        `on_stage` hears "parsing" once the stored documents are read, "embedding" once parsing
        is done, "storing" before the transaction that
        stores the chunks and "committed" after it; `finalize(session, results)` runs inside that
        transaction (the worker commits its job state there). With `collection_id` (a queued
        job's) the collection must still be that one: it is never created, and a deleted one
        raises `CollectionGoneError`.

        A document that another writer deleted, created or replaced while this call ran is not
        overwritten: it is reported `failed` with code `document_changed`. A queued job passes
        `writes_around(session) -> (by newer jobs, by older jobs meanwhile)`: then a document an
        upload queued later already stored is never overwritten (its worker may have run first,
        or this job is a retry), and one only an upload queued earlier changed meanwhile is
        replaced by this, later, upload.
        """
        stage = on_stage or (lambda _stage: None)
        with self.database.session() as session:
            if collection_id is None:
                collection = self.ensure_collection(session, collection_name)
            else:
                collection = self._same_collection(session, collection_name, collection_id)
                self.check_compatible(collection)
            overlap = min(collection.chunk_overlap, collection.chunk_tokens // 2)
            chunker = Chunker(self.embedder.tokenizer, collection.chunk_tokens, overlap)
            stored = self._stored(session, collection, [d.external_id for d in documents])
        stage("parsing")
        results: list[IngestResult] = []
        items: list[PreparedDocument] = []
        for source in tqdm(documents, desc="parsing", unit="doc", disable=not progress or len(documents) < 2):
            known = stored.get(source.external_id)
            try:
                items.extend(expand(source, known.content_hash if known else None, self.parse_limits))
            except ParseError as exc:
                results.append(IngestResult(source.external_id, "failed", error=str(exc), error_code=exc.code))
        with self.database.session() as session:
            stored.update(self._stored(session, collection, [i.external_id for i in items if i.external_id not in stored]))
        for item in items:
            known = stored.get(item.external_id)
            if known is not None and known.content_hash == item.content_hash:
                item.unchanged = True
            if not item.unchanged:
                item.chunks = chunk_rows(item, chunker)
        stage("embedding")
        to_embed = [item for item in items if not item.unchanged]
        texts = [chunk["text"] for item in to_embed for chunk in item.chunks]
        vectors = self.embedder.embed(texts, kind="passage", show_progress=progress and len(texts) > 0)
        if self.sparse_head is not None and texts:
            weights = self.sparse_head.encode(texts)
            for chunk, weight in zip((chunk for item in to_embed for chunk in item.chunks), weights):
                chunk["sparse"] = weight
        stage("storing")
        with self.database.session() as session:
            collection = self._same_collection(session, collection_name, collection.id)
            self.check_compatible(collection)
            offset, written = 0, set()
            newer, older = writes_around(session) if writes_around else (set(), set())
            for item in items:
                document = store.find_document(session, collection, item.external_id)
                count = 0 if item.unchanged else len(item.chunks)
                changed = _changed_meanwhile(stored.get(item.external_id), document)
                if changed and document is not None and not item.unchanged and item.external_id in older:
                    changed = False  # an earlier upload got there first: this later one replaces it
                if item.external_id not in written and (changed or item.external_id in newer):
                    offset += count
                    results.append(IngestResult(
                        item.external_id, "failed", error_code="document_changed",
                        error="the document was deleted or replaced while this upload was being "
                              "processed; it was left as it is (upload it again to replace it)"))
                    continue
                if item.unchanged:
                    if document is not None and item.metadata:
                        document.meta = item.metadata
                    results.append(IngestResult(item.external_id, "unchanged"))
                    continue
                status = "updated" if document is not None else "added"
                self._store(session, collection, document, item, vectors[offset : offset + count])
                written.add(item.external_id)
                offset += count
                results.append(IngestResult(item.external_id, status, chunks=count))
            if finalize:
                finalize(session, results)
        stage("committed")
        if to_embed:
            self.save_snapshot(collection_name)
        return results

    @staticmethod
    def _same_collection(session, name: str, collection_id: int) -> Collection:
        """The collection `name`, if it is still the one with `collection_id`, locked for this
        transaction (`store.lock_collection`): the check that no document changed meanwhile and
        the writes after it see no other writer in between."""
        collection = session.get(Collection, collection_id, populate_existing=True,
                                 with_for_update={"key_share": True})
        if collection is None or collection.name != name:
            raise CollectionGoneError(f"collection {name!r} was deleted")
        return collection

    @staticmethod
    def _stored(session, collection: Collection, external_ids: list[str]) -> dict[str, Document]:
        found = {}
        for start in range(0, len(external_ids), 500):
            batch = external_ids[start : start + 500]
            for document in session.scalars(
                select(Document).where(Document.collection_id == collection.id, Document.external_id.in_(batch))
            ):
                found[document.external_id] = document
        return found

    def save_snapshot(self, collection_name: str) -> None:
        """Best effort: the chunks are committed, so a failed snapshot (a full disk, the database
        restarting, the collection deleted meanwhile) only costs readers a catch-up later."""
        try:
            with self.database.session() as session:
                self.indexes.after_write(session, store.get_collection(session, collection_name))
        except Exception as exc:  # noqa: BLE001 - the ingestion itself has succeeded
            log.warning("could not write the index snapshot of %s (%s); readers rebuild it from "
                        "the database", collection_name, type(exc).__name__)

    @staticmethod
    def _store(session, collection: Collection, document: Document | None, item: PreparedDocument, vectors: np.ndarray) -> None:
        if document is None:
            document = Document(collection_id=collection.id, external_id=item.external_id)
            session.add(document)
        document.source = item.source
        document.content_hash = item.content_hash
        document.meta = json.loads(json.dumps(item.metadata or {}))
        document.status = "indexed"
        document.text_length = len(item.text)
        session.flush()
        store.replace_chunks(session, collection, document, item.chunks, vectors)


def _changed_meanwhile(before: Document | None, now: Document | None) -> bool:
    """Whether the stored document is no longer the one this ingestion read at its start."""
    if before is None or now is None:
        return (before is None) != (now is None)
    return before.id != now.id or before.content_hash != now.content_hash
