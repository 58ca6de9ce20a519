"""parse -> chunk -> embed -> store -> index, shared by the CLI and the worker."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from tqdm.auto import tqdm

from ingestion.chunking import Chunker, default_chunk_size
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
        if tokens > limit:
            raise InvalidRequestError(
                f"chunk size {tokens} exceeds what {display_name(self.embedder.model_id)} embeds without truncation "
                f"({limit} tokens); choose at most {limit}",
                code="invalid_chunk_size",
            )
        overlap = chunk_overlap if chunk_overlap is not None else self.chunk_overlap
        if overlap is None:
            overlap = min(default_overlap, tokens // 4)
        if overlap >= tokens:
            raise InvalidRequestError(
                f"chunk overlap {overlap} must be smaller than the chunk size {tokens}", code="invalid_chunk_size"
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
    ) -> list[IngestResult]:
        """Ingest `documents`; unchanged ones are skipped, failed ones reported, not raised.

        `on_stage` hears "embedding" once parsing is done; `finalize(session, results)` runs inside
        the transaction that stores the chunks (the worker commits its job state there).
        """
        with self.database.session() as session:
            collection = self.ensure_collection(session, collection_name)
            chunker = Chunker(self.embedder.tokenizer, collection.chunk_tokens, collection.chunk_overlap)
            stored = self._stored(session, collection, [d.external_id for d in documents])
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
        if on_stage:
            on_stage("embedding")
        to_embed = [item for item in items if not item.unchanged]
        texts = [chunk["text"] for item in to_embed for chunk in item.chunks]
        vectors = self.embedder.embed(texts, kind="passage", show_progress=progress and len(texts) > 0)
        if self.sparse_head is not None and texts:
            weights = self.sparse_head.encode(texts)
            for chunk, weight in zip((chunk for item in to_embed for chunk in item.chunks), weights):
                chunk["sparse"] = weight
        with self.database.session() as session:
            collection = store.get_collection(session, collection_name)
            self.check_compatible(collection)
            offset = 0
            for item in items:
                document = store.find_document(session, collection, item.external_id)
                if item.unchanged:
                    if document is not None and item.metadata:
                        document.meta = item.metadata
                    results.append(IngestResult(item.external_id, "unchanged"))
                    continue
                count = len(item.chunks)
                status = "updated" if document is not None else "added"
                self._store(session, collection, document, item, vectors[offset : offset + count])
                offset += count
                results.append(IngestResult(item.external_id, status, chunks=count))
            if finalize:
                finalize(session, results)
        if to_embed:
            self.save_snapshot(collection_name)
        return results

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
        """Best effort: the chunks are committed, so a failed snapshot only costs a catch-up later."""
        try:
            with self.database.session() as session:
                self.indexes.after_write(session, store.get_collection(session, collection_name))
        except OSError as exc:
            log.warning("could not write the index snapshot of %s (%s); readers rebuild it from the database", collection_name, exc)

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
