"""HTML: the page's main text as paragraphs, with sections from `<h1>`..`<h6>`.

Scripts, styles, navigation, forms, asides, `<svg>` and hidden elements are dropped, and so are
page-level `<header>`/`<footer>` (those inside `<main>`/`<article>` hold the article's own title
and byline, so they stay). `<main>`, or a single `<article>`, is preferred to the whole body.
Block elements become paragraphs separated by a blank line; inline whitespace is collapsed,
`<br>` is a newline and `<pre>` keeps its layout. The title is `<title>`, else the first `<h1>`.
Uses lxml when it is installed, else the standard library's html.parser.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PreformattedString, Tag

from ingestion.parsers import ParsedDocument, sections_from_headings

try:
    import lxml  # noqa: F401

    _PARSER = "lxml"
except ImportError:
    _PARSER = "html.parser"

_DROP = frozenset(
    ["script", "style", "noscript", "template", "nav", "aside", "form", "svg", "iframe", "object", "canvas", "head", "title", "button", "select"]
)
_PAGE_CHROME = frozenset({"header", "footer"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    ["html", "body", "main", "article", "section", "div", "p", "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "caption", "blockquote", "figure", "figcaption", "hr", "address", "details", "summary", "center", "fieldset", "legend", "header", "footer"]
) | frozenset(_HEADINGS)
_CELLS = frozenset({"td", "th"})
_LINE_BREAK = "\x00"  # NUL never reaches a parser: binary content is refused before.
_XML_DECLARATION = re.compile(r"\s*<\?xml[^>]*>")
_SPACE = re.compile(r"\s+")
_AROUND_BREAK = re.compile(r" ?\x00 ?")


def parse(text: str) -> ParsedDocument:
    # Without the XML declaration bs4 never warns that XML is parsed as HTML; the trailing
    # newline stops its warning that short markup "looks like a filename".
    soup = BeautifulSoup(_XML_DECLARATION.sub("", text, count=1) + "\n", _PARSER)
    title = _collapse(soup.title.get_text()) if soup.title else ""
    blocks, headings = [], []
    for root in _roots(soup):
        blocks, headings = _Extractor().run(root)
        if blocks:
            break
    body = "\n\n".join(blocks)
    h1 = next((name for _, level, name in headings if level == 1), None)
    return ParsedDocument(
        text=body,
        format="html",
        title=title or h1,
        sections=sections_from_headings(headings, len(body)),
    )


def _roots(soup: BeautifulSoup) -> list[Tag]:
    """Candidate content roots, best first: <main>, a lone <article>, then the body."""
    roots = []
    if main := soup.find("main"):
        roots.append(main)
    articles = soup.find_all("article")
    if len(articles) == 1:
        roots.append(articles[0])
    roots.append(soup.body or soup)
    return roots


def _collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


class _Extractor:
    """Walks a tree without recursion (deep pages must not hit the recursion limit)."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.headings: list[tuple[int, int, str]] = []
        self.pieces: list[str] = []
        self.length = 0  # length of "\n\n".join(self.blocks)

    def run(self, root: Tag) -> tuple[list[str], list[tuple[int, int, str]]]:
        stack: list[tuple[object, bool]] = [(root, False)]
        while stack:
            node, closing = stack.pop()
            if closing:
                self.flush(_HEADINGS.get(node.name))
            elif isinstance(node, Tag):
                if _skip(node):
                    continue
                if node.name == "br":
                    self.pieces.append(_LINE_BREAK)
                elif node.name == "pre":
                    self.flush()
                    self.add_block(node.get_text().strip("\n"))
                elif node.name in _BLOCKS:
                    self.flush()
                    stack.append((node, True))
                    stack.extend((child, False) for child in reversed(node.contents))
                else:
                    if node.name in _CELLS:
                        self.pieces.append(" ")
                    stack.extend((child, False) for child in reversed(node.contents))
            elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
                self.pieces.append(str(node))  # comments, CDATA and doctypes are Preformatted
        self.flush()
        return self.blocks, self.headings

    def flush(self, heading_level: int | None = None) -> None:
        text = _AROUND_BREAK.sub("\n", _SPACE.sub(" ", "".join(self.pieces)))
        self.pieces = []
        text = text.strip(" \n")
        if heading_level and text:
            self.headings.append((self.length + 2 * bool(self.blocks), heading_level,
                                  " ".join(text.split())))
        self.add_block(text)

    def add_block(self, text: str) -> None:
        if not text.strip():
            return
        self.length += 2 * bool(self.blocks) + len(text)
        self.blocks.append(text)


def _skip(node: Tag) -> bool:
    if node.name in _DROP or node.has_attr("hidden"):
        return True
    if str(node.get("aria-hidden", "")).lower() == "true":
        return True
    return node.name in _PAGE_CHROME and node.find_parent(["main", "article"]) is None
