"""Real sample files for the parser tests, generated on the fly: PDF, DOCX, corpus.jsonl, hostile ones.

`make_pdf` writes a PDF with fpdf2 (one list item per page); `raw_pdf` writes a minimal PDF by
hand around given content streams (for inputs fpdf2 would never produce); `make_docx` builds a
Word document with python-docx from (style, text) blocks and tables; `make_corpus` writes BEIR
corpus.jsonl lines; `docx_bomb` streams a DOCX whose document.xml inflates to `size` bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from functools import lru_cache


def make_pdf(pages: Sequence[str], *, title: str | None = None) -> bytes:
    """A PDF with one page per string (Helvetica, so Latin-1 text only)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(False)
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=10)
        if text:
            pdf.multi_cell(0, 5, text)
    return bytes(pdf.output())


def raw_pdf(streams: Sequence[bytes]) -> bytes:
    """A minimal valid PDF (catalog, pages, Helvetica) with one page per content stream."""
    n = len(streams)
    font_id, first_page = 3, 4
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(n))
        + b"] /Count %d >>" % n,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, stream in enumerate(streams):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       b"<< /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (font_id, first_page + 2 * i + 1))
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def text_stream(lines: Iterable[str]) -> bytes:
    """A content stream showing each line of Latin-1 text on its own line."""
    ops = [b"BT /F1 10 Tf 14 TL 72 720 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(b"(" + escaped.encode("latin-1") + b") Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)


def make_docx(
    blocks: Sequence[tuple[str, str] | list[list[str]]],
    *,
    title: str | None = None,
    styles: dict[str, str] | None = None,
) -> bytes:
    """A Word document: ("Heading 2", "text") paragraphs ("Normal", "Title", ...) and tables (rows).

    `styles` adds paragraph styles, by name, based on existing ones: {"Chapter": "Heading 1"}.
    """
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    for name, base in (styles or {}).items():
        document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH).base_style = document.styles[base]
    for block in blocks:
        if isinstance(block, tuple):
            style, text = block
            document.add_paragraph(text, style=style)
        else:
            table = document.add_table(rows=len(block), cols=len(block[0]))
            for row, values in zip(table.rows, block):
                for cell, value in zip(row.cells, values):
                    cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_corpus(documents: Iterable[dict]) -> bytes:
    """BEIR corpus.jsonl lines for the given objects (`_id`, `title`, `text`, ...)."""
    return "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in documents).encode()


@lru_cache(maxsize=2)
def docx_bomb(size: int = 1 << 30) -> bytes:
    """A DOCX whose word/document.xml inflates to `size` bytes of "0" (about 4.5 MB per GiB).

    The valid parts of a real document are copied in, then document.xml is streamed through
    zipfile 1 MiB at a time, so building it never holds more than a few MB (about 2 s per GiB;
    cached, so test modules share one).
    """
    source = zipfile.ZipFile(io.BytesIO(make_docx([("Normal", "placeholder")])))
    buffer = io.BytesIO()
    with source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for info in source.infolist():
            if info.filename != "word/document.xml":
                archive.writestr(info.filename, source.read(info))
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            head = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w='
                    b'"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p>'
                    b"<w:r><w:t>")
            member.write(head)
            block, left = b"0" * (1 << 20), size - len(head)
            while left > 0:
                member.write(block[: min(left, len(block))])
                left -= len(block)
    return buffer.getvalue()
