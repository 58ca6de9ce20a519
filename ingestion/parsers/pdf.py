"""PDF (pypdf): the text layer of each page, pages joined by a blank line, a section per page.

Each page with text gets one `Section(start, end, (), page=n)` (n from 1) over its span of the
joined text; pages without text (blank or scanned) are left out of the text. A page whose
content cannot be read is skipped and listed in `metadata["unreadable_pages"]`; a PDF with no
readable text at all is refused. `metadata["pages"]` is the page count, the title is the
document information's title. Password-protected PDFs are opened only when the empty user
password works. pypdf's own limits on decompressed streams report `document_too_large`.
"""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader
from pypdf.errors import DependencyError, LimitReachedError

from ingestion.parsers.base import ParsedDocument, ParseError, Section, check_text_size, clean_text

log = logging.getLogger(__name__)


def parse(data: bytes) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader)
        count = len(reader.pages)
        parts, sections, unreadable, length = [], [], [], 0
        for number, page in enumerate(reader.pages, start=1):
            try:
                text = clean_text(page.extract_text() or "").strip()
            except (LimitReachedError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - one broken page must not lose the others
                log.warning("PDF page %d could not be read: %s: %s", number, type(exc).__name__, exc)
                unreadable.append(number)
                continue
            if not text:
                continue
            start = length + 2 * bool(parts)
            parts.append(text)
            length = start + len(text)
            check_text_size(length, "The PDF")
            sections.append(Section(start, length, (), page=number))
        title = _title(reader)
    except (ParseError, MemoryError):
        raise
    except LimitReachedError as exc:
        raise ParseError(f"The PDF is too large to read: {exc}", code="document_too_large", status=413) from exc
    except Exception as exc:  # pypdf raises many kinds of errors on broken files
        raise ParseError(f"The PDF could not be read ({_describe(exc)}).", code="invalid_pdf") from exc
    if not parts:
        detail = f"pages {unreadable} could not be read" if unreadable else "scanned pages need OCR"
        raise ParseError(
            f"The PDF has no extractable text ({count} page(s); {detail}).", code="empty_document"
        )
    metadata = {"pages": count, **({"unreadable_pages": unreadable} if unreadable else {})}
    return ParsedDocument("\n\n".join(parts), "pdf", title=title, sections=sections, metadata=metadata)


def _decrypt(reader: PdfReader) -> None:
    try:
        decrypted = reader.decrypt("")
    except DependencyError as exc:
        raise ParseError(f"The PDF is encrypted in a way that cannot be opened: {exc}",
                         code="pdf_encrypted") from exc
    if not decrypted:
        raise ParseError("The PDF is password-protected.", code="pdf_encrypted")


def _title(reader: PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # noqa: BLE001 - a broken information dictionary only loses the title
        return None
    title = " ".join(clean_text(str(title)).split()) if title else ""
    return title or None


def _describe(exc: Exception) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__
