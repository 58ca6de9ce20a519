"""DOCX (python-docx): body paragraphs and tables in order, sections from Heading 1..6 styles.

Paragraphs are blocks separated by a blank line; a table is one block with a line per row and
its cells joined by " | " (merged cells once). Headings are paragraphs whose style, or a style
it is based on, is "Heading 1".."Heading 6"; they give sections like Markdown's. The title is
the core properties' title, else the first "Title" paragraph, else the first Heading 1. Headers,
footers, footnotes, comments and text boxes are not read.

Before python-docx opens the archive, the sizes recorded in its directory are checked (CPython's
zipfile never inflates a member past its recorded size): more than `MAX_UNCOMPRESSED_BYTES` in
all, or a member over `RATIO_MIN_BYTES` that inflates more than `MAX_RATIO` times, is refused as
`document_too_large` without decompressing anything.
"""

from __future__ import annotations

import io
import re
import zipfile

from ingestion.parsers.base import (
    ParsedDocument,
    ParseError,
    check_text_size,
    clean_text,
    sections_from_headings,
)

MAX_UNCOMPRESSED_BYTES = 256 << 20
MAX_RATIO = 100
RATIO_MIN_BYTES = 4 << 20
_HEADING_STYLE = re.compile(r"heading ([1-6])", re.IGNORECASE)
_MAX_STYLE_DEPTH = 16


def parse(data: bytes) -> ParsedDocument:
    check_archive(data)
    try:
        import docx

        document = docx.Document(io.BytesIO(data))
        return _extract(document)
    except (ParseError, MemoryError):
        raise
    except Exception as exc:  # python-docx and lxml raise many kinds on broken files
        message = " ".join(str(exc).split())[:200]
        raise ParseError(
            f"The DOCX document could not be read ({type(exc).__name__}: {message}).",
            code="invalid_docx",
        ) from exc


def check_archive(data: bytes) -> None:
    """Refuse unreadable archives and decompression bombs before anything is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ParseError(
            f"The DOCX document is not a readable ZIP archive (truncated or corrupt?): {exc}",
            code="invalid_docx",
        ) from exc
    if not any(info.filename == "word/document.xml" for info in infos):
        raise ParseError("The archive has no word/document.xml, so it is not a Word document.",
                         code="invalid_docx")
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_MIN_BYTES and ratio > MAX_RATIO:
            raise _too_large(f"{info.filename} would inflate {ratio:,.0f} times, to "
                             f"{info.file_size / (1 << 20):,.0f} MiB (a decompression bomb?)")
    if total > MAX_UNCOMPRESSED_BYTES:
        raise _too_large(f"its files would inflate to {total / (1 << 20):,.0f} MiB, more than "
                         f"{MAX_UNCOMPRESSED_BYTES >> 20} MiB")


def _too_large(reason: str) -> ParseError:
    return ParseError(f"The DOCX document is refused: {reason}.", code="document_too_large",
                      status=413)


def _extract(document) -> ParsedDocument:
    from docx.table import Table

    blocks: list[str] = []
    headings: list[tuple[int, int, str]] = []
    length, title = 0, None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            text = _table_text(item)
        else:
            text = clean_text(item.text).strip()
            style = _style_names(item)
            level = next((int(m.group(1)) for name in style if (m := _HEADING_STYLE.fullmatch(name))),
                         None)
            if text and level is not None:
                headings.append((length + 2 * bool(blocks), level, " ".join(text.split())))
            if text and title is None and style and style[0].lower() == "title":
                title = " ".join(text.split())
        if not text:
            continue
        length += 2 * bool(blocks) + len(text)
        check_text_size(length, "The DOCX document")
        blocks.append(text)
    body = "\n\n".join(blocks)
    core_title = " ".join(clean_text(document.core_properties.title or "").split())
    h1 = next((name for _, level, name in headings if level == 1), None)
    return ParsedDocument(
        text=body, format="docx", title=core_title or title or h1,
        sections=sections_from_headings(headings, len(body)),
    )


def _style_names(paragraph) -> list[str]:
    """The paragraph's style name and those of the styles it is based on, nearest first."""
    names, style = [], paragraph.style
    while style is not None and len(names) < _MAX_STYLE_DEPTH:
        names.append(style.name or "")
        style = style.base_style
    return names


def _table_text(table) -> str:
    rows = []
    for row in table.rows:
        cells, previous = [], None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell is listed once per grid column it spans
                continue
            previous = cell._tc
            if text := " ".join(clean_text(cell.text).split()):
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)
