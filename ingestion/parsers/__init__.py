"""Turn uploaded bytes into documents: text with heading (and page) sections.

`parse_many(data, filename=..., content_type=...)` detects the format from the content first
(`detect.py`: magic bytes, markup, JSON lines), then from the name or content type, and hands
the file to that format's module through the `PARSERS` registry. It returns one document for
single-document formats (txt, md, html, pdf, docx; `external_id` None) and one per line for a
BEIR-style corpus.jsonl (`external_id` = `_id`, `metadata` = its title and `metadata` object).
`parse(...)` is the single-document form: it returns the only document, and refuses a corpus
that holds several (`multiple_documents`).

Every format module has one function, `parse(content) -> ParsedDocument` (or a list, for
formats registered `many=True`). Text formats receive decoded text whose newlines are already
`\\n`; binary formats (`binary=True`) receive the raw bytes. Format modules are imported on first
use, so BeautifulSoup, pypdf and python-docx are only loaded for the formats that need them, and
nothing here imports torch or transformers (`ingestion.isolation` runs this in a child process).
Untrusted input is best parsed through `ingestion.isolation.parse_isolated`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ingestion.parsers.base import (
    MAX_TEXT_CHARS,
    ParsedDocument,
    ParseError,
    Section,
    UnsupportedFormatError,
    check_text_size,
    clean_text,
    sections_from_headings,
)
from ingestion.parsers.decoding import decode_text

__all__ = [
    "MAX_TEXT_CHARS",
    "PARSERS",
    "SUPPORTED_FORMATS",
    "TEXT_FORMATS",
    "Format",
    "ParseError",
    "ParsedDocument",
    "Section",
    "UnsupportedFormatError",
    "check_text_size",
    "clean_text",
    "decode_text",
    "get_parser",
    "parse",
    "parse_many",
    "parse_text",
    "sections_from_headings",
]


@dataclass(frozen=True)
class Format:
    """A registered format: the module whose `parse` reads it, and what that function takes."""

    module: str
    binary: bool = False  # parse(data: bytes); otherwise parse(text: str), decoded
    many: bool = False  # parse returns list[ParsedDocument]; otherwise one ParsedDocument


PARSERS: dict[str, Format] = {
    "txt": Format("ingestion.parsers.text"),
    "md": Format("ingestion.parsers.markdown"),
    "html": Format("ingestion.parsers.html"),
    "pdf": Format("ingestion.parsers.pdf", binary=True),
    "docx": Format("ingestion.parsers.docx", binary=True),
    "jsonl": Format("ingestion.parsers.jsonl", many=True),
}
SUPPORTED_FORMATS: tuple[str, ...] = tuple(PARSERS)
# How a JSON-API document's `format` names the text parsers (never detected from the content).
TEXT_FORMATS: dict[str, str] = {"text": "txt", "markdown": "md", "html": "html"}


def parse_many(
    data: bytes, *, filename: str | None = None, content_type: str | None = None
) -> list[ParsedDocument]:
    """Parse an uploaded file into its documents. Raises `ParseError` (or `UnsupportedFormatError`).

    Every document returned has text; their total length is at most `MAX_TEXT_CHARS`.
    """
    from ingestion.parsers.detect import detect

    if not data.strip():
        raise ParseError("The document is empty.", code="empty_document")
    text_formats = frozenset(name for name, fmt in PARSERS.items() if not fmt.binary)
    fmt, text = detect(data, filename=filename, content_type=content_type, text_formats=text_formats)
    entry = PARSERS[fmt]
    result = get_parser(fmt)(data if entry.binary else text)
    docs = result if entry.many else [result]
    check_text_size(sum(len(doc.text) for doc in docs))
    if not entry.many and not docs[0].text.strip():
        raise ParseError(f"The {fmt} document has no text content.", code="empty_document")
    if not docs:
        raise ParseError(f"The {fmt} file holds no documents.", code="empty_document")
    return docs


def parse(
    data: bytes, *, filename: str | None = None, content_type: str | None = None
) -> ParsedDocument:
    """Parse a single-document upload; a corpus.jsonl must hold exactly one document."""
    docs = parse_many(data, filename=filename, content_type=content_type)
    if len(docs) > 1:
        raise ParseError(
            f"The {docs[0].format} file holds {len(docs)} documents; ingest it with parse_many.",
            code="multiple_documents",
        )
    return docs[0]


def parse_text(text: str, fmt: str = "text") -> ParsedDocument:
    """Read text that was sent as text (a JSON-API document) as `fmt`: one document, its content
    never sniffed, so a text that looks like a corpus or a PDF stays one text document."""
    if fmt not in TEXT_FORMATS:
        raise ParseError(
            f"format must be one of {', '.join(TEXT_FORMATS)}, got {fmt!r}", code="unsupported_format"
        )
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ParseError("The document is empty.", code="empty_document")
    check_text_size(len(text))
    document = get_parser(TEXT_FORMATS[fmt])(text)
    if not document.text.strip():
        raise ParseError(f"The {fmt} document has no text content.", code="empty_document")
    return document


def get_parser(fmt: str) -> Callable[..., ParsedDocument | list[ParsedDocument]]:
    """The `parse(content)` function registered for `fmt`."""
    if fmt not in PARSERS:
        raise UnsupportedFormatError(fmt)
    return importlib.import_module(PARSERS[fmt].module).parse
