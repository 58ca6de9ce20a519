"""Which format a file is: its content first (magic bytes, markup, JSON lines), then its name.

Content that is a supported binary format (PDF, a ZIP holding `word/document.xml`) is parsed as
that format whatever it is called; a file *called* PDF or DOCX whose content is not one is
refused as invalid; other binary content is unsupported (415). Text is decoded, then recognised
as HTML or as a BEIR-style corpus (a JSON object with `_id` on its first line), else read as
the format its name or content type declares (plain text when none).
"""

from __future__ import annotations

import io
import json
import re
import zipfile

from ingestion.parsers.base import ParseError, UnsupportedFormatError
from ingestion.parsers.decoding import BOMS, decode_text, normalise_newlines

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
BINARY_FORMATS = {"pdf": "PDF file (it must start with %PDF-)",
                  "docx": "Word document (a ZIP archive holding word/document.xml)"}
_ZIP_MEMBERS = (("word/document.xml", "docx"), ("xl/workbook.xml", "xlsx"),
                ("ppt/presentation.xml", "pptx"))
_ZIP_MIMETYPES = {"application/vnd.oasis.opendocument.text": "odt", "application/epub+zip": "epub"}

_EXTENSIONS = {
    "txt": "txt", "text": "txt",
    "md": "md", "markdown": "md", "mdown": "md", "mkd": "md",
    "html": "html", "htm": "html", "xhtml": "html",
    "pdf": "pdf", "docx": "docx", "jsonl": "jsonl", "ndjson": "jsonl",
}
SUPPORTED_EXTENSIONS = frozenset(_EXTENSIONS)  # what `search-service ingest FOLDER` picks up
_BINARY_EXTENSIONS = frozenset(
    ["doc", "odt", "rtf", "xls", "xlsx", "ods", "ppt", "pptx", "odp", "epub", "zip", "gz", "tgz", "bz2", "xz", "7z", "rar", "tar", "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "ico", "svg", "mp3", "wav", "ogg", "flac", "mp4", "mov", "avi", "mkv", "exe", "dll", "so", "bin"]
)
_CONTENT_TYPES = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/x-ndjson": "jsonl",
}
_UNDECLARED_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_BINARY_TYPE_PREFIXES = ("image/", "audio/", "video/", "font/", "application/pdf",
                         "application/zip", "application/gzip", "application/msword",
                         "application/vnd.", "application/epub", "application/rtf",
                         "application/x-tar", "application/x-7z", "application/x-rar")


def detect(
    data: bytes, *, filename: str | None, content_type: str | None, text_formats: frozenset[str]
) -> tuple[str, str | None]:
    """(format, text): the format to parse `data` as, and its decoded text for text formats.

    `text_formats` are the registered formats that read decoded text. Raises
    `UnsupportedFormatError` for other formats, `ParseError` for undecodable text and for files
    declared PDF/DOCX whose content is not one.
    """
    declared = declared_format(filename, content_type)
    magic = sniff_binary(data)
    if magic == "pdf":
        return "pdf", None
    if magic == "zip":
        kind = _zip_kind(data)
        if kind == "docx" or (kind is None and declared == "docx"):
            return "docx", None  # an unreadable ZIP called .docx: the DOCX parser says why
        raise UnsupportedFormatError(kind or "zip")
    if declared in BINARY_FORMATS:
        what = f"{filename!r}" if filename else "The document"
        raise ParseError(
            f"{what} is declared as {declared} but is not a {BINARY_FORMATS[declared]}; "
            f"its content looks like {magic or 'text'}.",
            code=f"invalid_{declared}",
        )
    if magic:
        raise UnsupportedFormatError(magic)
    try:
        text = normalise_newlines(decode_text(data, charset=_charset(content_type)))
    except ParseError:
        if declared is not None and declared not in text_formats:
            raise UnsupportedFormatError(declared) from None
        raise
    if _looks_like_html(text, strong_only=declared == "md"):
        return "html", text
    if _looks_like_corpus(text):
        return "jsonl", text
    fmt = declared or "txt"
    if fmt not in text_formats:
        raise UnsupportedFormatError(fmt)
    return fmt, text


def sniff_binary(data: bytes) -> str | None:
    """Name the binary type of `data`, or None when it may be text."""
    if any(data.startswith(bom) for bom, _ in BOMS):
        return None
    head = data[:64].lstrip(b" \t\r\n")
    for magic, name in _MAGIC:
        if (head if name == "pdf" else data).startswith(magic):
            return name
    return "binary" if b"\x00" in data else None


def _zip_kind(data: bytes) -> str | None:
    """What a ZIP archive holds (docx, xlsx, ...; "zip" when unknown), or None if unreadable."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            for member, kind in _ZIP_MEMBERS:
                if member in names:
                    return kind
            info = archive.getinfo("mimetype") if "mimetype" in names else None
            if info is not None and info.file_size <= 100:
                return _ZIP_MIMETYPES.get(archive.read(info).decode("ascii", "replace").strip(), "zip")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return None
    return "zip"


def declared_format(filename: str | None, content_type: str | None) -> str | None:
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


def _looks_like_corpus(text: str) -> bool:
    """True when the first non-blank line is a JSON object with an `_id` (a BEIR corpus.jsonl)."""
    head = text.lstrip()
    if not head.startswith("{"):
        return False
    try:
        first = json.loads(head.split("\n", 1)[0])
    except ValueError:
        return False
    return isinstance(first, dict) and "_id" in first


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
