"""The `search-service` CLI over a real database and the real MiniLM embedder."""

import json

import pytest
from click.testing import CliRunner

from search_service.cli import main
from tests.support.documents import DOCUMENTS, PARAPHRASES


@pytest.fixture
def env(tmp_path, database_url, minilm_path):
    return {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_DATABASE_URL": database_url,
        "RAG_EMBEDDER_MODEL": minilm_path,
        "RAG_RERANKER_MODEL": "none",
        "RAG_DEVICE": "cpu",
    }


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "nested").mkdir(parents=True)
    for name, text in DOCUMENTS.items():
        target = folder / "nested" / name if name == "gil.md" else folder / name
        target.write_text(text)
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")  # skipped when walking a folder
    return folder


def invoke(env, *args):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_worker_and_serve_refuse_an_unmigrated_database(env):
    for command in (["worker", "--once"], ["serve"], ["search", "q", "-c", "x"], ["ingest", ".", "-c", "x"]):
        result = invoke(env, *command)
        assert result.exit_code == 1, command
        assert "search-service migrate" in result.output


def test_migrate_ingest_search(env, corpus):
    assert invoke(env, "migrate").exit_code == 0
    result = invoke(env, "ingest", str(corpus), "--collection", "docs")
    assert result.exit_code == 0, result.output
    assert "5 added" in result.output
    again = invoke(env, "ingest", str(corpus), "--collection", "docs")
    assert "5 unchanged" in again.output and "0 chunks embedded" in again.output

    result = invoke(env, "search", PARAPHRASES["gil.md"], "--collection", "docs", "--json")
    response = json.loads(result.stdout)
    assert response["results"][0]["document_id"] == "nested/gil.md"  # external id = relative path
    assert len(response["results"]) == 5

    text = invoke(env, "search", PARAPHRASES["panda.md"], "-c", "docs", "--top-k", "2").stdout
    assert text.splitlines()[0].startswith("1. [") and "panda.md" in text.splitlines()[0]


def test_search_with_rerank_but_none_configured_is_a_clear_error(env, corpus):
    invoke(env, "migrate")
    invoke(env, "ingest", str(corpus), "-c", "docs")
    result = invoke(env, "search", "q", "-c", "docs", "--json")
    assert result.exit_code == 0  # rerank defaults to off when no reranker is configured
    assert json.loads(result.stdout)["reranked"] is False


def test_unloadable_model_names_the_setting(env):
    invoke(env, "migrate")
    result = invoke({**env, "RAG_EMBEDDER_MODEL": "BAAI/definitely-not-cached"}, "worker", "--once")
    assert result.exit_code == 1
    assert "RAG_EMBEDDER_MODEL" in result.output and "local directory" in result.output


@pytest.mark.parametrize("command", [("search", "pandas", "-c", "docs"), ("rerank", "q", "a passage")])
def test_unloadable_reranker_names_the_setting_and_the_fix(env, monkeypatch, command):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    invoke(env, "migrate")
    result = invoke({**env, "RAG_RERANKER_MODEL": "BAAI/definitely-not-cached"}, *command)
    assert result.exit_code == 1
    for part in ("RAG_RERANKER_MODEL", "hf download BAAI/definitely-not-cached", "local directory"):
        assert part in result.output, result.output


def test_bad_setting_is_a_cli_error(env):
    result = invoke({**env, "RAG_TOP_K": "many"}, "migrate")
    assert result.exit_code == 1 and "RAG_TOP_K must be an integer" in result.output


def test_ingest_walks_every_supported_format(env, tmp_path):
    from tests.support.files import make_corpus, make_docx, make_pdf

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "manual.pdf").write_bytes(make_pdf(["The turbine blades are inspected every spring."]))
    (folder / "report.docx").write_bytes(make_docx([("Normal", "Quarterly revenue grew in the northern region.")]))
    (folder / "corpus.jsonl").write_bytes(make_corpus([{"_id": "d1", "title": "Tides", "text": "The moon drives ocean tides."}]))
    (folder / "notes.txt").write_text("Bring an umbrella on rainy days.")
    (folder / "archive.zip").write_bytes(b"PK\x03\x04")  # not a supported format: skipped
    assert invoke(env, "migrate").exit_code == 0
    result = invoke(env, "ingest", str(folder), "-c", "mixed")
    assert result.exit_code == 0, result.output
    assert "4 added" in result.output and "failed" not in result.output
    response = json.loads(invoke(env, "search", "when are turbine blades inspected?", "-c", "mixed", "--json").stdout)
    assert response["results"][0]["document_id"] == "manual.pdf"


def test_migrate_does_not_print_the_database_password(env, database_url):
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":  # trust auth: any password is accepted
        env = {**env, "RAG_DATABASE_URL": url.set(password="s3cret-pw").render_as_string(hide_password=False)}
    result = invoke(env, "migrate")
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output
    assert ("***" in result.output) == (url.get_backend_name() == "postgresql")
