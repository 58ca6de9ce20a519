"""Turn uploaded bytes into text with heading sections.

`parse(data, filename=..., content_type=...)` refuses binary content, decodes the text, picks a
format (content first, then the extension, then the content type) and hands the text to that
format's module through the `PARSERS` registry. Every format module has the same signature,
`parse(text: str) -> ParsedDocument`, and receives text whose newlines are already `\\n`.
Format modules are imported on first use, so BeautifulSoup is only loaded for HTML.
"""

from __future__ import annotations

import codecs
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Format name -> module providing `parse(text: str) -> ParsedDocument`.
PARSERS: dict[str, str] = {
    "txt": "ingestion.parsers.text",
    "md": "ingestion.parsers.markdown",
    "html": "ingestion.parsers.html",
}
SUPPORTED_FORMATS: tuple[str, ...] = tuple(PARSERS)


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
    """The content (or its declared type) is a format we do not parse, e.g. PDF or ZIP."""

    code = "unsupported_media_type"
    status = 415

    def __init__(self, detected: str):
        self.detected = detected
        super().__init__(
            f"Unsupported document type {detected!r}; supported types: {', '.join(SUPPORTED_FORMATS)}."
        )


@dataclass(frozen=True)
class Section:
    """The span `text[start:end]` lies under the headings `heading_path` (outermost first)."""

    start: int
    end: int
    heading_path: tuple[str, ...]


@dataclass(frozen=True)
class ParsedDocument:
    text: str
    format: str
    title: str | None = None
    sections: list[Section] = field(default_factory=list)


def parse(
    data: bytes, *, filename: str | None = None, content_type: str | None = None
) -> ParsedDocument:
    """Parse an uploaded document. Raises `ParseError` (or `UnsupportedFormatError`)."""
    if not data.strip():
        raise ParseError("The document is empty.", code="empty_document")
    binary = _sniff_binary(data)
    if binary:
        raise UnsupportedFormatError(binary)
    declared = _declared_format(filename, content_type)
    try:
        text = _normalise_newlines(decode_text(data, charset=_charset(content_type)))
    except ParseError:
        if declared is not None and declared not in PARSERS:
            raise UnsupportedFormatError(declared) from None
        raise
    fmt = "html" if _looks_like_html(text, strong_only=declared == "md") else declared or "txt"
    if fmt not in PARSERS:
        raise UnsupportedFormatError(fmt)
    doc = get_parser(fmt)(text)
    if not doc.text.strip():
        raise ParseError(f"The {fmt} document has no text content.", code="empty_document")
    return doc


def get_parser(fmt: str) -> Callable[[str], ParsedDocument]:
    """The `parse(text)` function registered for `fmt`."""
    if fmt not in PARSERS:
        raise UnsupportedFormatError(fmt)
    return importlib.import_module(PARSERS[fmt]).parse


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


# --- decoding -------------------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_MAGIC = (
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2 (doc/xls/ppt)"),
    (b"{\\rtf", "rtf"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x7fELF", "elf"),
)


def _sniff_binary(data: bytes) -> str | None:
    """Name the binary type of `data`, or None when it may be text."""
    if any(data.startswith(bom) for bom, _ in _BOMS):
        return None
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return "binary" if b"\x00" in data else None


def decode_text(data: bytes, *, charset: str | None = None) -> str:
    """Decode: a BOM wins, then valid UTF-8, then a declared charset, then charset-normalizer.

    UTF-8 goes before the declared charset because text with non-ASCII bytes that happens to be
    valid UTF-8 almost always is UTF-8, while declared charsets are often stale defaults.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _undecodable(f"{encoding} (from its byte order mark)") from exc
    for encoding in ("utf-8", charset):
        if encoding:
            try:
                return data.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                pass
    return _detect_and_decode(data)


_CP1252_SLACK = 0.1  # chaos (charset-normalizer's mess ratio) cp1252 may exceed the best by


def _detect_and_decode(data: bytes) -> str:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise _undecodable("any known encoding")
    best = matches[0]
    # On short Western European text the guess wavers between cp1252, cp1250, cp1257...: take
    # cp1252, by far the most common legacy encoding, when it reads about as cleanly as the best.
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= best.chaos + _CP1252_SLACK:
            return data.decode("cp1252")
    return str(best)


def _undecodable(what: str) -> ParseError:
    return ParseError(f"The document is not valid text in {what}.", code="undecodable_text")


def _normalise_newlines(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# --- format detection -----------------------------------------------------------------------

_EXTENSIONS = {
    "txt": "txt", "text": "txt",
    "md": "md", "markdown": "md", "mdown": "md", "mkd": "md",
    "html": "html", "htm": "html", "xhtml": "html",
}
_BINARY_EXTENSIONS = frozenset(
    "pdf doc docx odt rtf xls xlsx ods ppt pptx odp epub zip gz tgz bz2 xz 7z rar tar "
    "png jpg jpeg gif bmp tif tiff webp ico svg mp3 wav ogg flac mp4 mov avi mkv exe dll so bin".split()
)
_CONTENT_TYPES = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
}
_UNDECLARED_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_BINARY_TYPE_PREFIXES = ("image/", "audio/", "video/", "font/", "application/pdf",
                         "application/zip", "application/gzip", "application/msword",
                         "application/vnd.", "application/epub", "application/rtf",
                         "application/x-tar", "application/x-7z", "application/x-rar")


def _declared_format(filename: str | None, content_type: str | None) -> str | None:
    """The format the name or content type declares: a supported one, an unsupported name or None."""
    ext = filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext in _BINARY_EXTENSIONS:
        return ext
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in _CONTENT_TYPES:
        return _CONTENT_TYPES[mime]
    if mime.startswith(_BINARY_TYPE_PREFIXES):
        return mime
    return "txt" if mime.startswith("text/") or mime in _UNDECLARED_TYPES else None


def _charset(content_type: str | None) -> str | None:
    match = re.search(r";\s*charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.IGNORECASE)
    return match.group(1) if match else None


_PREAMBLE = re.compile(r"\s*(?:<\?xml[^>]*>\s*|<!--.*?-->\s*)*", re.DOTALL)
_STRONG_HTML = re.compile(r"<(?:!doctype\s+html|html|head|body)[\s>/]", re.IGNORECASE)
_WEAK_HTML = re.compile(
    r"<(?:meta|title|link|div|p|h[1-6]|table|main|article|section|span|ul|ol|br)[\s>/]",
    re.IGNORECASE,
)


def _looks_like_html(text: str, *, strong_only: bool) -> bool:
    """True when the text starts like an HTML page.

    `<html>`, `<head>`, `<body>` or an HTML doctype always count. Common body tags (`<div>`,
    `<p>`...) count too, except for declared Markdown, which may well open with raw HTML.
    """
    head = text[:4096]
    pos = _PREAMBLE.match(head).end()
    if _STRONG_HTML.match(head, pos):
        return True
    return not strong_only and _WEAK_HTML.match(head, pos) is not None
