"""parse_isolated on real and hostile files: results equal parse_many's, failures are ParseErrors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingestion.isolation import parse_isolated
from ingestion.parsers import ParseError, UnsupportedFormatError, parse_many
from tests.support.files import (
    docx_bomb,
    make_corpus,
    make_docx,
    make_pdf,
    raw_pdf,
    text_stream,
)

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["First page words. " * 20, "Second page words. " * 20, "Third page words. " * 20]


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (make_pdf(PAGES, title="Three"), "three.pdf"),
        (make_docx([("Heading 1", "Intro"), ("Normal", "Hello."), ("Heading 2", "More"),
                    ("Normal", "Details.")]), "intro.docx"),
        (make_corpus([{"_id": "a", "title": "T", "text": "x", "metadata": {"n": 1}},
                      {"_id": "b", "text": "y \U0001f600 \u00e9"}]), "corpus.jsonl"),
        ("Crème brûlée, naïve façade.".encode("cp1252"), "latin.txt"),
        (b"<html><body><h1>Hi</h1><p>There.</p></body></html>", "page.html"),
    ],
    ids=["pdf", "docx", "jsonl", "cp1252-text", "html"],
)
def test_results_equal_parsing_in_process(data, filename):
    assert parse_isolated(data, filename=filename) == parse_many(data, filename=filename)


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        (make_pdf(PAGES)[:1500], "truncated.pdf", "invalid_pdf"),
        (b"Meeting notes, not a PDF.", "notes.pdf", "invalid_pdf"),
        (make_docx([("Normal", "x")])[:2000], "cut.docx", "invalid_docx"),
        (b"", "empty.txt", "empty_document"),
        (b" \n\t ", "blank.txt", "empty_document"),
        (bytes(range(128, 256)) * 4, "legacy.txt", "undecodable_text"),
        (make_corpus([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}]), "c.jsonl",
         "duplicate_document_id"),
    ],
    ids=["truncated-pdf", "text-named-pdf", "truncated-docx", "empty", "blank", "not-utf8",
         "duplicate-id"],
)
def test_parse_errors_cross_the_process_boundary(data, filename, code):
    with pytest.raises(ParseError) as info:
        parse_isolated(data, filename=filename)
    with pytest.raises(ParseError) as direct:
        parse_many(data, filename=filename)
    assert info.value.code == code
    assert (info.value.message, info.value.status) == (direct.value.message, direct.value.status)


def test_random_bytes_are_unsupported():
    data = bytes(range(256)) * 8 + os.urandom(4096)
    with pytest.raises(UnsupportedFormatError) as info:
        parse_isolated(data, filename="upload.txt")
    assert (info.value.code, info.value.status, info.value.detected) == (
        "unsupported_media_type", 415, "binary")


def test_a_txt_that_is_really_a_pdf_is_parsed_as_pdf():
    [doc] = parse_isolated(make_pdf(PAGES), filename="really-a-pdf.txt", content_type="text/plain")
    assert doc.format == "pdf"
    assert [s.page for s in doc.sections] == [1, 2, 3]


def test_zip_bomb_docx_is_refused():
    with pytest.raises(ParseError) as info:
        parse_isolated(docx_bomb(), filename="bomb.docx")
    assert (info.value.code, info.value.status) == ("document_too_large", 413)


def test_memory_limit():
    big = ("A line of ordinary words that repeats many times over. " * 20 + "\n") * 20_000  # 22 MB
    with pytest.raises(ParseError) as info:
        parse_isolated(big.encode(), filename="big.txt", memory_bytes=64 << 20)
    assert info.value.code == "parse_out_of_memory"
    assert info.value.message == "parsing needed more than 64 MiB of memory"
    [doc] = parse_isolated(b"A small text.", filename="small.txt", memory_bytes=64 << 20)
    assert doc.text == "A small text."  # the limit leaves room for the interpreter itself


def test_timeout_on_a_real_document():
    with pytest.raises(ParseError) as info:
        parse_isolated(make_pdf(PAGES), filename="a.pdf", timeout_s=0.001)
    assert info.value.code == "parse_timeout"
    assert info.value.message == "parsing took longer than 0.001 s"


def slow_pdf() -> bytes:
    """A 2 MB PDF whose one page shows 100,000 text runs: pypdf needs over 10 s on 2 cores."""
    return raw_pdf([text_stream(f"word{i} " for i in range(100_000))])


def test_timeout_kills_a_slow_parse():
    data = slow_pdf()
    began = time.monotonic()
    with pytest.raises(ParseError) as info:
        parse_isolated(data, filename="slow.pdf", timeout_s=1.0)
    assert info.value.code == "parse_timeout"
    assert info.value.message == "parsing took longer than 1 s"
    assert time.monotonic() - began < 5


def test_a_child_killed_by_a_signal_is_a_crash():
    outcome: list[BaseException] = []

    def run():
        try:
            parse_isolated(slow_pdf(), filename="slow.pdf", timeout_s=30)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    child = _wait_for_child("ingestion.isolation")
    os.kill(child, signal.SIGSEGV)
    thread.join(30)
    [error] = outcome
    assert isinstance(error, ParseError)
    assert error.code == "parse_crashed"
    assert "SIGSEGV" in error.message


def _wait_for_child(marker: str) -> int:
    """The pid of this process's child whose command line contains `marker`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and marker.encode() in command:
                return int(entry.name)
        time.sleep(0.02)
    raise AssertionError(f"no child running {marker}")


def test_the_child_imports_no_model_libraries(tmp_path):
    """Parsing every format loads none of torch, transformers, numpy or the service."""
    samples = [make_pdf(["x"]), make_docx([("Heading 1", "x")]),
               make_corpus([{"_id": 1, "text": "x"}]), b"<p>x</p>", b"# x", b"x"]
    for i, data in enumerate(samples):
        (tmp_path / str(i)).write_bytes(data)
    script = (
        "import pathlib, sys\n"
        "import ingestion.isolation\n"
        "from ingestion.parsers import parse_many\n"
        "for path in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n"
        "    parse_many(path.read_bytes())\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'numpy', 'faiss', "
        "'search_service', 'sqlalchemy', 'flask'}\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
