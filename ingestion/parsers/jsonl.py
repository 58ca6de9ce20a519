"""BEIR-style corpus.jsonl: one JSON object per line, `{"_id", "title", "text"}`, one document each.

`_id` (a non-empty string, or an integer) becomes the document's `external_id`; the text is
`title + "\\n\\n" + text` when there is a title, with one section headed by the title, and the
metadata holds `title` plus the entries of an optional `metadata` object (as in TREC-COVID).
Blank lines are skipped. Any other line, a duplicate `_id` or a document without title and text
is refused, naming its line number.
"""

from __future__ import annotations

import json

from ingestion.parsers.base import ParsedDocument, ParseError, Section, check_text_size, clean_text

MAX_ID_CHARS = 1024  # documents.external_id is a String(1024)


def parse(text: str) -> list[ParsedDocument]:
    docs: list[ParsedDocument] = []
    first_line: dict[str, int] = {}
    length = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        doc = _document(number, line)
        if doc.external_id in first_line:
            raise ParseError(
                f"corpus.jsonl line {number}: duplicate _id {doc.external_id!r} "
                f"(first used on line {first_line[doc.external_id]}).",
                code="duplicate_document_id",
            )
        first_line[doc.external_id] = number
        length += len(doc.text)
        check_text_size(length, "The corpus")
        docs.append(doc)
    return docs


def _document(number: int, line: str) -> ParsedDocument:
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise _invalid(number, f"is not valid JSON ({getattr(exc, 'msg', exc)}, column "
                               f"{getattr(exc, 'colno', '?')})") from None
    if not isinstance(item, dict):
        raise _invalid(number, f"is a JSON {type(item).__name__}, not an object")
    doc_id = item.get("_id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise _invalid(number, 'has no "_id" (a non-empty string)')
    doc_id = clean_text(doc_id)
    if len(doc_id) > MAX_ID_CHARS:
        raise _invalid(number, f"has an _id longer than {MAX_ID_CHARS} characters")
    fields = {}
    for key in ("title", "text"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise _invalid(number, f'has a "{key}" that is not a string')
        fields[key] = clean_text(value or "").strip()
    title, body = fields["title"], fields["text"]
    if not title and not body:
        raise ParseError(f"corpus.jsonl line {number}: document {doc_id!r} has neither title nor "
                         "text.", code="empty_document")
    extra = item.get("metadata")
    metadata = {**(extra if isinstance(extra, dict) else {}), **({"title": title} if title else {})}
    if not title:
        return ParsedDocument(body, "jsonl", external_id=doc_id, metadata=metadata)
    full = f"{title}\n\n{body}" if body else title
    return ParsedDocument(full, "jsonl", title=title, sections=[Section(0, len(full), (title,))],
                          external_id=doc_id, metadata=metadata)


def _invalid(number: int, problem: str) -> ParseError:
    return ParseError(f"corpus.jsonl line {number} {problem}.", code="invalid_jsonl")
