"""Plain text: the decoded text as is, with no title and no sections."""

from __future__ import annotations

from ingestion.parsers import ParsedDocument


def parse(text: str) -> ParsedDocument:
    return ParsedDocument(text=text, format="txt")
