"""From a submitted file or text to the documents it holds, their hashes and their chunks.

A file is hashed before parsing, so re-submitting unchanged bytes skips parsing altogether. A
file that holds several documents (a BEIR corpus.jsonl) is hashed per document after parsing, so
re-uploading a corpus only re-embeds the documents that changed.

Binary containers (PDF, ZIP/DOCX), where the parsers are large C-backed or decompressing
libraries, are parsed in an isolated child process with time and memory limits
(`ingestion.isolation`). Text formats (txt, md, html, jsonl) are decoded and parsed in-process:
their cost is bounded by the upload limit, and a child per document would cost more than the
parse itself (about 0.2 s each).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from ingestion.chunking import Chunker
from ingestion.isolation import parse_isolated
from ingestion.parsers import Section, parse_many, parse_text
from ingestion.parsers.detect import sniff_binary


@dataclass
class SourceDocument:
    """One submission: raw bytes to parse, or text that is already extracted."""

    external_id: str
    data: bytes | None = None
    text: str | None = None
    filename: str | None = None
    content_type: str | None = None
    source: str | None = None
    metadata: dict = field(default_factory=dict)
    # How to read `text`: text, markdown or html (ingestion.parsers.TEXT_FORMATS). Text is never
    # sniffed: only `data` (an uploaded file) is detected, and may hold several documents.
    format: str = "text"

    def content_hash(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        content = (self.text or "").encode("utf-8", "surrogatepass")
        if self.format != "text":  # the same text read as markdown or html is another document
            content = self.format.encode() + b"\0" + content
        return hashlib.sha256(content).hexdigest()


@dataclass
class PreparedDocument:
    """A document ready to store; `chunks` is empty when `unchanged`."""

    external_id: str
    source: str
    content_hash: str
    metadata: dict
    text: str = ""
    sections: tuple[Section, ...] = ()
    unchanged: bool = False
    chunks: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class ParseLimits:
    timeout_s: float = 60.0
    memory_bytes: int = 2 * 1024**3
    isolate: bool = True


def expand(source: SourceDocument, stored_hash: str | None, limits: ParseLimits) -> list[PreparedDocument]:
    """The documents `source` holds; a single document whose bytes are unchanged is not parsed."""
    raw_hash = source.content_hash()
    label = source.source or source.filename or source.external_id
    if stored_hash == raw_hash:
        return [PreparedDocument(source.external_id, label, raw_hash, source.metadata, unchanged=True)]
    if source.data is None:  # sent as text: one document, under its own id
        parsed_text = parse_text(source.text or "", source.format)
        return [PreparedDocument(source.external_id, label, raw_hash, {**parsed_text.metadata, **source.metadata},
                                 text=parsed_text.text, sections=tuple(parsed_text.sections))]
    if source.data is not None and limits.isolate and sniff_binary(source.data) is not None:
        parsed = parse_isolated(
            source.data,
            filename=source.filename or source.external_id,
            content_type=source.content_type,
            timeout_s=limits.timeout_s,
            memory_bytes=limits.memory_bytes,
        )
    else:
        data = source.data if source.data is not None else (source.text or "").encode("utf-8")
        parsed = parse_many(data, filename=source.filename or source.external_id, content_type=source.content_type)
    several = len(parsed) > 1 or any(doc.external_id for doc in parsed)
    documents = []
    for doc in parsed:
        metadata = {**doc.metadata, **source.metadata}
        if several:
            content = json.dumps([doc.text, metadata], sort_keys=True, ensure_ascii=False).encode()
            content_hash = hashlib.sha256(content).hexdigest()
        else:
            content_hash = raw_hash
        documents.append(
            PreparedDocument(
                external_id=doc.external_id or source.external_id,
                source=label,
                content_hash=content_hash,
                metadata=metadata,
                text=doc.text,
                sections=tuple(doc.sections),
            )
        )
    return documents


def chunk_rows(document: PreparedDocument, chunker: Chunker) -> list[dict]:
    """Chunks as rows for the store, with the heading path and page as chunk metadata."""
    rows = []
    for chunk in chunker.chunk(document.text, document.sections):
        meta: dict = {}
        if chunk.heading_path:
            meta["heading_path"] = list(chunk.heading_path)
        if chunk.page is not None:
            meta["page"] = chunk.page
        rows.append(
            {
                "ordinal": chunk.ordinal,
                "text": chunk.text,
                "char_start": chunk.start,
                "char_end": chunk.end,
                "token_count": chunk.token_count,
                "meta": meta,
            }
        )
    return rows
