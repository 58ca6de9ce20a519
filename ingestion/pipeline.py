"""parse -> chunk -> embed -> store -> index, shared by the CLI and the worker."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ingestion.chunking import Chunker, default_chunk_size
from ingestion.parsers import ParseError, parse
from search_service.errors import DimensionMismatchError, InvalidRequestError
from search_service.retrieval.index import IndexManager
from search_service.store import collections as store
from search_service.store.db import Database
from search_service.store.models import Collection, Document

log = logging.getLogger(__name__)


@dataclass
class SourceDocument:
    """One document to ingest: raw bytes to parse, or text that is already extracted."""

    external_id: str
    data: bytes | None = None
    text: str | None = None
    filename: str | None = None
    content_type: str | None = None
    source: str | None = None
    metadata: dict = field(default_factory=dict)

    def content_hash(self) -> str:
        content = self.data if self.data is not None else (self.text or "").encode("utf-8")
        return hashlib.sha256(content).hexdigest()


@dataclass
class IngestResult:
    external_id: str
    status: str  # added | updated | unchanged | failed
    chunks: int = 0
    error: str | None = None
    error_code: str | None = None


@dataclass
class _Prepared:
    source: SourceDocument
    content_hash: str
    text_length: int
    chunks: list[dict]
    status: str


class IngestionPipeline:
    def __init__(self, database: Database, embedder, indexes: IndexManager, *, chunk_tokens=None, chunk_overlap=None):
        self.database = database
        self.embedder = embedder
        self.indexes = indexes
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap

    def chunk_settings(self, chunk_tokens: int | None = None, chunk_overlap: int | None = None) -> tuple[int, int]:
        """Requested sizes, else the configured ones, else what the embedder can take untruncated."""
        limit = self.embedder.max_seq_length - self.embedder.num_special_tokens
        default_tokens, default_overlap = default_chunk_size(
            self.embedder.max_seq_length, self.embedder.num_special_tokens
        )
        tokens = chunk_tokens or self.chunk_tokens or default_tokens
        if tokens > limit:
            raise InvalidRequestError(
                f"chunk size {tokens} exceeds what {self.embedder.model_id} embeds without truncation "
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
                f"collection {collection.name!r} was built with {collection.embedder_model} "
                f"({collection.dimension} dimensions) but the configured embedder "
                f"{self.embedder.model_id} produces {self.embedder.dimension}; use the same embedder "
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
            existing = {
                doc.external_id: doc
                for doc in (store.find_document(session, collection, d.external_id) for d in documents)
                if doc is not None
            }
        results: list[IngestResult] = []
        prepared: list[_Prepared] = []
        for source in tqdm(documents, desc="parsing", unit="doc", disable=not progress or len(documents) < 2):
            try:
                item = self._prepare(source, existing.get(source.external_id), chunker)
            except ParseError as exc:
                results.append(IngestResult(source.external_id, "failed", error=str(exc), error_code=exc.code))
                continue
            if item.status == "unchanged":
                results.append(IngestResult(source.external_id, "unchanged"))
            prepared.append(item)
        if on_stage:
            on_stage("embedding")
        to_embed = [item for item in prepared if item.status != "unchanged"]
        texts = [chunk["text"] for item in to_embed for chunk in item.chunks]
        vectors = self.embedder.embed(texts, kind="passage", show_progress=progress and len(texts) > 0)
        with self.database.session() as session:
            collection = store.get_collection(session, collection_name)
            self.check_compatible(collection)
            offset = 0
            for item in prepared:
                document = existing.get(item.source.external_id)
                if document is not None:
                    document = session.merge(document)
                if item.status == "unchanged":
                    document.meta = item.source.metadata or document.meta
                    continue
                count = len(item.chunks)
                self._store(session, collection, document, item, vectors[offset : offset + count])
                offset += count
                results.append(IngestResult(item.source.external_id, item.status, chunks=count))
            if finalize:
                finalize(session, results)
        if to_embed:
            self.save_snapshot(collection_name)
        return results

    def save_snapshot(self, collection_name: str) -> None:
        """Best effort: the chunks are committed, so a failed snapshot only costs a catch-up later."""
        try:
            with self.database.session() as session:
                self.indexes.save_snapshot(session, store.get_collection(session, collection_name))
        except OSError as exc:
            log.warning("could not write the index snapshot of %s (%s); readers rebuild it from the database", collection_name, exc)

    @staticmethod
    def _prepare(source: SourceDocument, document: Document | None, chunker: Chunker) -> _Prepared:
        content_hash = source.content_hash()
        if document is not None and document.content_hash == content_hash:
            return _Prepared(source, content_hash, document.text_length, [], "unchanged")
        data = source.data if source.data is not None else (source.text or "").encode("utf-8")
        parsed = parse(data, filename=source.filename or source.external_id, content_type=source.content_type)
        text, sections = parsed.text, parsed.sections
        chunks = [
            {
                "ordinal": chunk.ordinal,
                "text": chunk.text,
                "char_start": chunk.start,
                "char_end": chunk.end,
                "token_count": chunk.token_count,
                "meta": {"heading_path": list(chunk.heading_path)} if chunk.heading_path else {},
            }
            for chunk in chunker.chunk(text, sections)
        ]
        status = "updated" if document is not None else "added"
        return _Prepared(source, content_hash, len(text), chunks, status)

    @staticmethod
    def _store(session, collection: Collection, document: Document | None, item: _Prepared, vectors: np.ndarray) -> None:
        source = item.source
        if document is None:
            document = Document(collection_id=collection.id, external_id=source.external_id)
            session.add(document)
        document.source = source.source or source.filename or source.external_id
        document.content_hash = item.content_hash
        document.meta = json.loads(json.dumps(source.metadata or {}))
        document.status = "indexed"
        document.text_length = item.text_length
        session.flush()
        store.replace_chunks(session, collection, document, item.chunks, vectors)
