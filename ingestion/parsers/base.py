"""The types every parser shares: errors, documents, sections, and the text-size limit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Extracted text above this many characters (over all documents of a file) is refused: about
# 50 MB of text, far more than any upload we accept could legitimately expand to.
MAX_TEXT_CHARS = 50_000_000


class ParseError(ValueError):
    """A document that cannot be turned into text. Shaped like `search_service.errors.ServiceError`."""

    code = "parse_error"
    status = 422

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class UnsupportedFormatError(ParseError):
    """The content (or its declared type) is a format we do not parse, e.g. ZIP or PNG."""

    code = "unsupported_media_type"
    status = 415

    def __init__(self, detected: str):
        from ingestion.parsers import SUPPORTED_FORMATS

        self.detected = detected
        super().__init__(
            f"Unsupported document type {detected!r}; supported types: {', '.join(SUPPORTED_FORMATS)}."
        )


@dataclass(frozen=True)
class Section:
    """The span `text[start:end]` lies under the headings `heading_path` (outermost first).

    Paged formats (PDF) also give one section per page, with `page` numbered from 1.
    """

    start: int
    end: int
    heading_path: tuple[str, ...]
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """Extracted text; multi-document files (corpus.jsonl) set `external_id` and `metadata`."""

    text: str
    format: str
    title: str | None = None
    sections: list[Section] = field(default_factory=list)
    external_id: str | None = None
    metadata: dict = field(default_factory=dict)


def sections_from_headings(headings: Iterable[tuple[int, int, str]], end: int) -> list[Section]:
    """Build flat, contiguous sections from `(offset, level, title)` headings in document order.

    Each heading opens a section that runs to the next heading (of any level) or to `end`; its
    path is the chain of enclosing headings, e.g. ("Guide", "Install", "Linux").
    """
    stack: list[tuple[int, str]] = []
    opened: list[tuple[int, tuple[str, ...]]] = []
    for offset, level, title in headings:
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        opened.append((offset, tuple(t for _, t in stack)))
    bounds = [offset for offset, _ in opened[1:]] + [end]
    return [Section(s, e, path) for (s, path), e in zip(opened, bounds) if e > s]


def clean_text(text: str) -> str:
    """Text extracted from binary formats or JSON, made storable: no NULs, no lone surrogates.

    PostgreSQL text cannot hold NUL, and a lone surrogate (from a broken PDF font map or a JSON
    `\\ud800` escape) cannot be encoded as UTF-8; both are replaced by U+FFFD.
    """
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_text_size(chars: int, what: str = "The document") -> None:
    """Refuse extracted text past `MAX_TEXT_CHARS` (callers check as they go, to stop early)."""
    if chars > MAX_TEXT_CHARS:
        raise ParseError(
            f"{what} expands to more than {MAX_TEXT_CHARS:,} characters of text.",
            code="document_too_large",
            status=413,
        )
