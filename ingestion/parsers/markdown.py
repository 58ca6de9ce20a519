"""Markdown: the source text unchanged, with sections from its headings.

The text is kept exactly as written (Markdown source embeds well) so chunk offsets point into
the uploaded document. Headings are ATX (`#` to `######`) and setext (`===` / `---` under a
paragraph), read line by line as CommonMark does; lines inside fenced code blocks, indented
code and YAML front matter are never headings. The title is the front matter `title:` or the
first level-1 heading.
"""

from __future__ import annotations

import re

from ingestion.parsers import ParsedDocument, sections_from_headings

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)$")
# List items, block quotes, HTML blocks, table rows, thematic breaks and indented code.
_NOT_PARAGRAPH = re.compile(
    r" {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|<|\||(?:[-*_][ \t]*){3,}$)|(?: {4}|\t)"
)
_FRONT_TITLE = re.compile(r"title:[ \t]*(.+?)[ \t]*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_CODE_SPAN = re.compile(r"(`+)(.*?)\1")
_EMPHASIS = re.compile(r"\*\*|__|(?<!\w)[*_]|[*_](?!\w)")


def parse(text: str) -> ParsedDocument:
    headings, front_title = _headings(text)
    h1 = next((title for _, level, title in headings if level == 1), None)
    return ParsedDocument(
        text=text,
        format="md",
        title=front_title or h1,
        sections=sections_from_headings(headings, len(text)),
    )


def _lines(text: str):
    """Yield (offset, line) without the newline."""
    offset = 0
    for line in text.split("\n"):
        yield offset, line
        offset += len(line) + 1


def _headings(text: str) -> tuple[list[tuple[int, int, str]], str | None]:
    headings: list[tuple[int, int, str]] = []
    front_title: str | None = None
    fence: str | None = None  # the opening fence while inside a fenced code block
    in_front_matter = text.startswith("---\n")
    paragraph: list[tuple[int, str]] = []  # lines of the paragraph being read
    for index, (offset, line) in enumerate(_lines(text)):
        if in_front_matter:
            if index and line.rstrip() in ("---", "..."):
                in_front_matter = False
            elif match := _FRONT_TITLE.match(line):
                front_title = front_title or match.group(1).strip("\"'") or None
            continue
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]) and len(line) - len(
                line.lstrip(" ")
            ) < 4:
                fence = None
            continue
        if (match := _FENCE_OPEN.match(line)) and not (
            match.group(1)[0] == "`" and "`" in match.group(2)
        ):
            fence, paragraph = match.group(1), []
            continue
        if paragraph and (match := _SETEXT.match(line)):
            title = _clean(" ".join(part for _, part in paragraph))
            if title:
                headings.append((paragraph[0][0], 1 if match.group(1)[0] == "=" else 2, title))
            paragraph = []
            continue
        if match := _ATX.match(line):
            if title := _clean(match.group(2) or ""):
                headings.append((offset, len(match.group(1)), title))
            paragraph = []
            continue
        if not line.strip():
            paragraph = []
        elif paragraph or not _NOT_PARAGRAPH.match(line):
            paragraph.append((offset, line.strip()))
    return headings, front_title


def _clean(title: str) -> str:
    """Heading text without link targets and emphasis or code markers."""
    parts = _CODE_SPAN.split(_LINK.sub(r"\1", title))
    # split() yields [text, fence, code, fence, code, ..., text]: code spans keep their text.
    kept = [_EMPHASIS.sub("", part) if i % 3 == 0 else part for i, part in enumerate(parts)
            if i % 3 != 1]
    return " ".join("".join(kept).split())
