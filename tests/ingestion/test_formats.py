"""PDF, DOCX and corpus.jsonl on real generated files: text, pages, headings, ids, refusals."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from ingestion.chunking import Chunker
from ingestion.parsers import ParseError, Section, parse, parse_many
from search_service.testing.minilm import minilm_path
from tests.support.files import docx_bomb, make_corpus, make_docx, make_pdf

PAGES = [
    "Alpine lakes are cold and clear. " * 25,
    "Desert dunes move with the wind every year. " * 25,
    "Coral reefs shelter thousands of fish species. " * 25,
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


# --- pdf ------------------------------------------------------------------------------------


def test_pdf_pages_become_sections_and_chunk_pages(tokenizer):
    doc = parse(make_pdf(PAGES, title="Landscapes"), filename="nature.pdf")
    assert (doc.format, doc.title, doc.metadata, doc.external_id) == (
        "pdf", "Landscapes", {"pages": 3}, None)
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert all(s.heading_path == () for s in doc.sections)
    for section, page in zip(doc.sections, PAGES):
        span = " ".join(doc.text[section.start : section.end].split())
        assert span == page.strip()  # fpdf2 wraps lines; the words and their order are kept
    for before, after in zip(doc.sections, doc.sections[1:]):
        assert doc.text[before.end : after.start] == "\n\n"
    assert doc.sections[0].start == 0 and doc.sections[-1].end == len(doc.text)

    chunks = Chunker(tokenizer, 48, 8).chunk(doc.text, doc.sections)
    for chunk in chunks:
        [page] = [s.page for s in doc.sections if s.start <= chunk.start < s.end]
        assert chunk.page == page
        assert chunk.heading_path == ()
    assert {c.page for c in chunks} == {1, 2, 3}
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)


def test_pdf_blank_pages_keep_their_numbers():
    doc = parse(make_pdf([PAGES[0], "", PAGES[2]]), filename="gap.pdf")
    assert [s.page for s in doc.sections] == [1, 3]
    assert doc.metadata == {"pages": 3}
    assert doc.title is None


def test_pdf_detected_by_content_whatever_its_name():
    data = make_pdf(PAGES[:1])
    for name in ("paper.txt", "paper.docx", "paper", None):
        assert parse(data, filename=name).format == "pdf"
    assert parse(data, content_type="text/plain").format == "pdf"


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        (make_pdf(["", ""]), "scan.pdf", "empty_document"),
        (make_pdf(PAGES)[:1500], "cut.pdf", "invalid_pdf"),
        (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "paper.txt", "invalid_pdf"),
        (b"Just some words, not a PDF at all.", "report.pdf", "invalid_pdf"),
        (b"Just some words.", None, "invalid_pdf"),  # declared by content type below
    ],
    ids=["no-text-layer", "truncated", "header-only", "text-named-pdf", "text-typed-pdf"],
)
def test_broken_pdfs_are_refused(data, filename, code):
    content_type = "application/pdf" if filename is None else None
    with pytest.raises(ParseError) as info:
        parse(data, filename=filename, content_type=content_type)
    assert (info.value.code, info.value.status) == (code, 422)
    if filename == "report.pdf":
        assert "'report.pdf' is declared as pdf" in info.value.message


# --- docx -----------------------------------------------------------------------------------


GUIDE = [
    ("Title", "Operations guide"),
    ("Normal", "Read this first."),
    ("Heading 1", "Install"),
    ("Normal", "Download the package."),
    ("Heading 2", "Linux"),
    ("Normal", "Use your package manager."),
    ("Heading 3", "Debian"),
    ("Normal", "apt install it."),
    [["Setting", "Default"], ["RAG_PORT", "8000"]],
    ("Chapter", "Usage"),  # a style based on Heading 1
    ("Normal", "Run the server."),
    ("Heading 2", "Queries"),
    ("Normal", ""),
    ("Normal", "Ask questions."),
]


STYLES = {"Chapter": "Heading 1"}


def guide(**options) -> bytes:
    return make_docx(GUIDE, styles=STYLES, **options)


def test_docx_headings_become_sections(tokenizer):
    doc = parse(guide(), filename="guide.docx")
    assert (doc.format, doc.title, doc.external_id, doc.metadata) == (
        "docx", "Operations guide", None, {})
    assert doc.text.startswith("Operations guide\n\nRead this first.\n\nInstall\n\n")
    assert "Setting | Default\nRAG_PORT | 8000" in doc.text
    assert "\n\n\n" not in doc.text  # the empty paragraph adds nothing

    def path_at(needle):
        [section] = [s for s in doc.sections if s.start <= doc.text.index(needle) < s.end]
        return section.heading_path

    assert not [s for s in doc.sections if s.start <= doc.text.index("Read this") < s.end]
    assert path_at("Download") == ("Install",)
    assert path_at("package manager") == ("Install", "Linux")
    assert path_at("apt install") == ("Install", "Linux", "Debian")
    assert path_at("RAG_PORT") == ("Install", "Linux", "Debian")
    assert path_at("Run the server") == ("Usage",)  # a style based on Heading 1
    assert path_at("Ask questions") == ("Usage", "Queries")
    for section in doc.sections:
        heading = section.heading_path[-1]
        assert doc.text[section.start : section.start + len(heading)] == heading

    chunks = Chunker(tokenizer, 8, 0).chunk(doc.text, doc.sections)
    assert {c.heading_path for c in chunks} >= {("Install", "Linux", "Debian"), ("Usage", "Queries")}
    assert all(c.page is None for c in chunks)


def test_docx_title_from_core_properties_then_heading():
    assert parse(guide(title="From properties")).title == "From properties"
    assert parse(make_docx(GUIDE[1:], styles=STYLES)).title == "Install"  # the first Heading 1


@pytest.mark.parametrize(
    ("make", "code", "status"),
    [
        (lambda: guide()[:-200], "invalid_docx", 422),
        (lambda: guide()[:3000], "invalid_docx", 422),
        (lambda: b"Plain text in a .docx", "invalid_docx", 422),
        (lambda: docx_bomb(), "document_too_large", 413),
    ],
    ids=["directory-cut", "truncated", "text-named-docx", "zip-bomb"],
)
def test_broken_docx_is_refused(make, code, status):
    with pytest.raises(ParseError) as info:
        parse(make(), filename="report.docx")
    assert (info.value.code, info.value.status) == (code, status)


def test_zip_bomb_is_refused_before_inflating():
    data = docx_bomb()
    assert len(data) < 8 << 20  # a few MB that would inflate to 1 GiB
    with pytest.raises(ParseError, match="1,024 MiB"):
        parse(data)  # detected as docx from its content, no name needed


# --- corpus.jsonl ---------------------------------------------------------------------------


CORPUS = [
    {"_id": "doc1", "title": "Giant panda", "text": "Pandas eat bamboo."},
    {"_id": "doc2", "title": "", "text": "Volcanoes erupt."},
    {"_id": 3, "title": "Coffee", "text": "Grind medium-fine.", "metadata": {"url": "https://x"}},
    {"_id": "doc4", "title": "Only a title"},
]


def test_corpus_documents_keep_ids_titles_and_metadata():
    docs = parse_many(make_corpus(CORPUS) + b"\n\n", filename="corpus.jsonl")
    assert [d.external_id for d in docs] == ["doc1", "doc2", "3", "doc4"]
    assert [d.text for d in docs] == [
        "Giant panda\n\nPandas eat bamboo.", "Volcanoes erupt.", "Coffee\n\nGrind medium-fine.",
        "Only a title"]
    assert [d.title for d in docs] == ["Giant panda", None, "Coffee", "Only a title"]
    assert [d.metadata for d in docs] == [
        {"title": "Giant panda"}, {}, {"url": "https://x", "title": "Coffee"},
        {"title": "Only a title"}]
    assert docs[0].sections == [Section(0, len(docs[0].text), ("Giant panda",))]
    assert docs[1].sections == []
    assert {d.format for d in docs} == {"jsonl"}


def test_corpus_is_detected_by_content_and_parse_wants_one_document():
    data = make_corpus(CORPUS)
    assert len(parse_many(data, filename="upload.txt")) == 4
    assert len(parse_many(data)) == 4
    with pytest.raises(ParseError) as info:
        parse(data, filename="corpus.jsonl")
    assert info.value.code == "multiple_documents" and "4 documents" in info.value.message
    [single] = [parse(make_corpus(CORPUS[:1]))]
    assert single.external_id == "doc1"


def test_single_document_formats_return_one_document():
    [doc] = parse_many(b"# Title\n\nBody.", filename="a.md")
    assert (doc.format, doc.external_id, doc.metadata) == ("md", None, {})


@pytest.mark.parametrize(
    ("lines", "code", "needle"),
    [
        (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": '], "invalid_jsonl", "line 2"),
        (['{"_id": "a", "text": "x"}', "", '["not", "an", "object"]'], "invalid_jsonl", "line 3"),
        (['{"_id": "a", "text": "x"}', '{"text": "no id"}'], "invalid_jsonl", "line 2"),
        (['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "again"}'],
         "duplicate_document_id", "line 2"),
        (['{"_id": "a", "text": 5}'], "invalid_jsonl", "line 1"),
        (['{"_id": "a", "title": "", "text": "  "}'], "empty_document", "line 1"),
        (['{"title": "no id", "text": "x"}'], "invalid_jsonl", "line 1"),  # named .jsonl
    ],
    ids=["truncated", "array", "missing-id", "duplicate-id", "text-not-string", "empty",
         "first-without-id"],
)
def test_invalid_corpus_lines_are_named(lines, code, needle):
    with pytest.raises(ParseError) as info:
        parse_many("\n".join(lines).encode(), filename="corpus.jsonl")
    assert info.value.code == code
    assert needle in info.value.message


def test_corpus_text_is_made_storable():
    line = json.dumps({"_id": "n", "text": "nul\u0000 and lone \ud800 surrogate"})
    [doc] = parse_many(line.encode(), filename="c.jsonl")
    assert "\x00" not in doc.text
    doc.text.encode("utf-8")  # no lone surrogate left


def test_extracted_text_is_capped(monkeypatch):
    from ingestion.parsers import base

    monkeypatch.setattr(base, "MAX_TEXT_CHARS", 1000)
    corpus = make_corpus({"_id": str(i), "text": "word " * 50} for i in range(10))
    with pytest.raises(ParseError) as info:
        parse_many(corpus)
    assert (info.value.code, info.value.status) == ("document_too_large", 413)
    with pytest.raises(ParseError, match="1,000 characters"):
        parse(make_pdf(PAGES), filename="a.pdf")
