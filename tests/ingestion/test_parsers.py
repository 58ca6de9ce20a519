"""Parsers on real documents: encodings, formats, refusals, headings."""

from __future__ import annotations

import io
import zipfile

import pytest

from ingestion.parsers import (
    SUPPORTED_FORMATS,
    ParseError,
    Section,
    UnsupportedFormatError,
    parse,
)

LATIN = "Crème brûlée, naïve façade: “smart quotes” – über Straße. Ça coûte 5 €."

MARKDOWN = """\
# User guide

Intro paragraph.

## Install

Run this:

```bash
# not a heading
pip install search-service
```

### On Linux ###

Use your package manager.

Configuration
-------------

Set `RAG_DATA_DIR`.

    # indented code, not a heading

Appendix
========

The end.
"""

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Eiffel   Tower - Travel</title>
  <style>body { color: red; }</style>
  <script>var tracking = "SECRET_SCRIPT";</script>
</head>
<body>
  <header><a href="/">Site logo</a></header>
  <nav><ul><li>Home</li><li>About NAVLINK</li></ul></nav>
  <main>
    <h1>Eiffel Tower</h1>
    <p>The tower is 330 metres tall.<br>It was built for the 1889 World's Fair.</p>
    <noscript>Enable JavaScript NOSCRIPT</noscript>
    <h2>History</h2>
    <p>Gustave Eiffel's company   designed it.</p>
    <form><input name="q"><button>Search FORMBUTTON</button></form>
    <h3>Construction</h3>
    <ul><li>Started 1887</li><li>Finished 1889</li></ul>
    <pre>height  = 330
width   = 125</pre>
    <!-- an HTML comment -->
    <h2>Visiting</h2>
    <table><tr><th>Level</th><th>Height</th></tr><tr><td>Top</td><td>276 m</td></tr></table>
  </main>
  <aside>Related ASIDE</aside>
  <footer>Copyright FOOTER</footer>
</body>
</html>
"""


def section_at(doc, needle: str) -> tuple[str, ...]:
    pos = doc.text.index(needle)
    [section] = [s for s in doc.sections if s.start <= pos < s.end]
    return section.heading_path


# --- text and encodings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        LATIN.encode("utf-8"),
        b"\xef\xbb\xbf" + LATIN.encode("utf-8"),
        LATIN.encode("utf-16"),  # with BOM (little-endian here)
        b"\xfe\xff" + LATIN.encode("utf-16-be"),
        LATIN.encode("cp1252"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "cp1252"],
)
def test_text_encodings_decode_to_the_same_text(data):
    doc = parse(data, filename="note.txt")
    assert doc.text == LATIN
    assert (doc.format, doc.title, doc.sections) == ("txt", None, [])


def test_latin1_text_without_declaration_is_detected():
    text = "Der Bär läuft über die Straße; à côté du garçon, très âgé, on était déjà là.\n" * 5
    assert parse(text.encode("latin-1"), filename="de.txt").text == text


def test_declared_charset_is_used():
    text = "Привет, мир. Это проверка кодировки."
    doc = parse(text.encode("cp1251"), content_type="text/plain; charset=windows-1251")
    assert doc.text == text


def test_newlines_are_normalised():
    doc = parse(b"one\r\ntwo\rthree\n", filename="a.txt")
    assert doc.text == "one\ntwo\nthree\n"


def test_unknown_text_extension_and_no_name_are_plain_text():
    assert parse(b"a,b\n1,2\n", filename="data.csv").format == "txt"
    assert parse(b"just some words").format == "txt"


def test_undecodable_bytes_are_refused():
    with pytest.raises(ParseError) as info:
        parse(bytes(range(128, 256)) * 4, filename="a.txt")
    assert info.value.code == "undecodable_text"


# --- refusals -------------------------------------------------------------------------------


def zip_bytes(*members: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member in members:
            archive.writestr(member, "<x>hello</x>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "filename", "detected"),
    [
        (zip_bytes("notes.txt"), "report.docx", "zip"),
        (zip_bytes("notes.txt"), None, "zip"),
        (zip_bytes("[Content_Types].xml", "xl/workbook.xml"), "sheet.docx", "xlsx"),
        (zip_bytes("[Content_Types].xml", "ppt/presentation.xml"), None, "pptx"),
        (b"plain words\x00\x01\x02 and more", "notes.txt", "binary"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image.md", "png"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "old.doc", "ole2 (doc/xls/ppt)"),
    ],
    ids=["zip-docx-name", "zip-unnamed", "xlsx", "pptx", "nul-bytes", "png", "ole2"],
)
def test_binary_and_unsupported_content_is_refused(data, filename, detected):
    with pytest.raises(UnsupportedFormatError) as info:
        parse(data, filename=filename)
    error = info.value
    assert isinstance(error, ParseError)
    assert error.code == "unsupported_media_type"
    assert error.status == 415
    assert error.detected == detected
    assert detected in error.message
    assert all(fmt in error.message for fmt in SUPPORTED_FORMATS)


def test_unsupported_content_type_is_refused():
    with pytest.raises(UnsupportedFormatError, match="application/zip"):
        parse(b"not really a zip", content_type="application/zip")
    with pytest.raises(UnsupportedFormatError, match="'png'"):
        parse(b"not really a png", filename="photo.png")


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "empty.txt"),
        (b"  \n\t\r\n ", "blank.md"),
        (b"\xef\xbb\xbf", "bom-only.txt"),
        ("\ufeff  \n".encode("utf-16"), "blank16.txt"),
        (b"<html><head><script>var a;</script></head><body><nav>menu</nav></body></html>", "x.html"),
    ],
    ids=["empty", "whitespace", "bom-only", "utf16-blank", "html-without-text"],
)
def test_empty_documents_are_refused(data, filename):
    with pytest.raises(ParseError) as info:
        parse(data, filename=filename)
    assert info.value.code == "empty_document"
    assert not isinstance(info.value, UnsupportedFormatError)


# --- markdown -------------------------------------------------------------------------------


def test_markdown_keeps_source_and_reads_headings():
    doc = parse(MARKDOWN.encode(), filename="guide.md")
    assert doc.format == "md"
    assert doc.text == MARKDOWN
    assert doc.title == "User guide"
    assert [s.heading_path for s in doc.sections] == [
        ("User guide",),
        ("User guide", "Install"),
        ("User guide", "Install", "On Linux"),
        ("User guide", "Configuration"),
        ("Appendix",),
    ]
    assert doc.sections[0].start == 0 and doc.sections[-1].end == len(MARKDOWN)
    for before, after in zip(doc.sections, doc.sections[1:]):
        assert before.end == after.start
    assert MARKDOWN[doc.sections[3].start :].startswith("Configuration\n---")
    assert section_at(doc, "# not a heading") == ("User guide", "Install")
    assert section_at(doc, "# indented code") == ("User guide", "Configuration")
    assert section_at(doc, "The end.") == ("Appendix",)


def test_markdown_content_type_and_front_matter():
    text = '---\ntitle: "Release notes"\nauthor: me\n---\n\nNo h1 here.\n\n## Changes\n\nMore.\n'
    doc = parse(text.encode(), content_type="text/markdown; charset=utf-8")
    assert doc.format == "md"
    assert doc.title == "Release notes"
    assert doc.sections == [Section(text.index("## Changes"), len(text), ("Changes",))]


def test_markdown_may_open_with_html():
    text = '<p align="center"><img src="logo.png"></p>\n\n# Project\n\nWords.\n'
    doc = parse(text.encode(), filename="README.md")
    assert (doc.format, doc.title) == ("md", "Project")


# --- html -----------------------------------------------------------------------------------


@pytest.fixture(params=["html.parser", "lxml"])
def html_parser(request, monkeypatch):
    """Run the HTML tests with the standard library's parser and, when installed, with lxml."""
    if request.param == "lxml":
        pytest.importorskip("lxml")
    import ingestion.parsers.html as module

    monkeypatch.setattr(module, "_PARSER", request.param)
    return request.param


def test_html_main_text_without_page_chrome(html_parser):
    doc = parse(PAGE.encode(), filename="tower.html")
    assert doc.format == "html"
    assert doc.title == "Eiffel Tower - Travel"
    for noise in ("SECRET_SCRIPT", "color: red", "NAVLINK", "Site logo", "NOSCRIPT", "FORMBUTTON",
                  "ASIDE", "FOOTER", "an HTML comment"):
        assert noise not in doc.text
    assert doc.text.startswith("Eiffel Tower\n\nThe tower is 330 metres tall.\nIt was built")
    assert "\n\nGustave Eiffel's company designed it.\n\n" in doc.text
    assert "\n\nStarted 1887\n\nFinished 1889\n\n" in doc.text
    assert "height  = 330\nwidth   = 125" in doc.text  # <pre> keeps its layout
    assert "Level Height" in doc.text and "Top 276 m" in doc.text
    assert section_at(doc, "Gustave") == ("Eiffel Tower", "History")
    assert section_at(doc, "Finished 1889") == ("Eiffel Tower", "History", "Construction")
    assert section_at(doc, "276 m") == ("Eiffel Tower", "Visiting")
    for section in doc.sections:
        heading = section.heading_path[-1]
        assert doc.text[section.start : section.start + len(heading)] == heading


def test_html_named_txt_is_detected_by_content(html_parser):
    doc = parse(PAGE.encode("utf-16"), filename="saved-page.txt", content_type="text/plain")
    assert doc.format == "html"
    assert "SECRET_SCRIPT" not in doc.text and "330 metres" in doc.text


def test_html_fragment_and_article_fallbacks(html_parser):
    fragment = b"<div><h1>Notes</h1><p>First.</p></div>"
    doc = parse(fragment, filename="notes.txt")
    assert (doc.format, doc.title, doc.text) == ("html", "Notes", "Notes\n\nFirst.")
    article = (
        b"<html><body><header>Top bar</header><article><header><h1>Post</h1><p>By Ann</p></header>"
        b"<p>Body text.</p><footer>Tags: a</footer></article><footer>Site footer</footer></body></html>"
    )
    doc = parse(article, content_type="text/html")
    assert doc.text == "Post\n\nBy Ann\n\nBody text.\n\nTags: a"


def test_xhtml_with_xml_declaration(html_parser):
    page = b'<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">' \
        b"<head><title>X</title></head><body><p>Hello XHTML.</p></body></html>"
    doc = parse(page, filename="page.xhtml")
    assert (doc.title, doc.text) == ("X", "Hello XHTML.")


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Příliš žluťoučký kůň úpěl ďábelské ódy. Čeština je krásný jazyk, že ano?\n", "cp1250"),
        ("Привет, как дела? Это проверка автоматического определения кодировки.\n", "cp1251"),
        ("日本語のテキストです。これは文字コードの自動判定のテストです。\n", "shift_jis"),
    ],
)
def test_other_legacy_encodings_are_detected(text, encoding):
    assert parse((text * 3).encode(encoding), filename="x.txt").text == text * 3
