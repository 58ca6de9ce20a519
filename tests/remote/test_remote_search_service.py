"""The remote runtime and remote embeddings against a real engine: a second `search-service
serve` process on the same checkpoints (protocols `cohere` and `tei` for reranking, `openai` for
embeddings). Rankings equal the in-process ones, scores agree within 1e-4 after the mapping,
vectors within 1e-5."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from search_service.errors import ConfigurationError
from search_service.remote.config import RERANK_PROTOCOLS, RemoteConfig
from search_service.rerankers.runtimes.registry import runtime_named
from tests.support.documents import DOCUMENTS, PARAPHRASES

pytestmark = pytest.mark.slow  # a real server process

QUERY = "what is panda?"
PASSAGES = [
    "hi",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China.",
    "大熊猫主要吃竹子,也吃少量的肉。",
    "Paris is the capital of France.",
    "Bears eat bamboo, fish, honey and berries in the forests and mountains. " * 12,
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Reranking scores every candidate passage against the query with a cross-encoder.",
    "hi",  # a repeated text is sent once and scored once
]
ENGINES = [
    pytest.param({"protocol": "cohere", "model": "tiny"}, id="cohere"),
    pytest.param({"protocol": "cohere", "model": "tiny", "scores": "logits"}, id="cohere-raw-scores"),
    pytest.param({"protocol": "tei"}, id="tei"),
]


def connect(base: str, name: str = "gpu", **remote):
    config = RemoteConfig(url=base, **{"timeout_s": 30, **remote}).check("test", RERANK_PROTOCOLS)
    return runtime_named("remote").connect(config, name=name, setting=f"RAG_RERANKERS ({name})")


@pytest.mark.parametrize("remote", ENGINES)
def test_remote_scores_equal_in_process(remote_service, tiny_reranker, remote):
    local = tiny_reranker.score(QUERY, PASSAGES)
    reranker = connect(remote_service, **remote)
    try:
        ranked = reranker.rank(QUERY, PASSAGES, normalize=True)
    finally:
        reranker.close()
    assert max(local) - min(local) > 0.05  # the tiny model tells the passages apart
    order = sorted(range(len(local)), key=lambda i: -local[i])
    assert [index for index, _ in ranked] == order
    normalized = dict(ranked)
    assert [math.log(normalized[i] / (1 - normalized[i])) for i in range(len(PASSAGES))] == pytest.approx(local, abs=1e-4)
    assert [normalized[i] for i in range(len(PASSAGES))] == pytest.approx(
        [1 / (1 + math.exp(-value)) for value in local], abs=1e-4)


def test_search_and_rerank_through_a_remote_reranker_equal_local(remote_service, tiny_reranker, app_factory, migrated_sqlite, tmp_path):
    from ingestion.pipeline import SourceDocument
    from search_service.store.db import migrate

    other = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(other)
    remote = connect(remote_service, protocol="tei")
    apps = {"local": app_factory(migrated_sqlite, tiny_reranker), "remote": app_factory(other, remote)}
    answers = {}
    for kind, app in apps.items():
        services = app.extensions["search_service"]
        services.ingestion.ingest("docs", [SourceDocument(external_id=k, text=v) for k, v in DOCUMENTS.items()])
        client = app.test_client()
        search = client.post("/v1/search", json={"collection": "docs", "query": PARAPHRASES["volcano.txt"],
                                                 "top_k": 5, "candidates": 20}).get_json()
        rerank = client.post("/v1/rerank", json={"query": QUERY, "documents": PASSAGES, "raw_scores": True}).get_json()
        v2 = client.post("/v2/rerank", json={"model": "tiny-reranker", "query": QUERY, "documents": PASSAGES}).get_json()
        answers[kind] = (search, rerank, v2)
    (search, rerank, v2), (r_search, r_rerank, r_v2) = answers["local"], answers["remote"]
    assert r_search["reranked"] is True and r_search["rerank_fallback"] is None
    assert [r["document_id"] for r in r_search["results"]] == [r["document_id"] for r in search["results"]]
    assert [r["rerank_score"] for r in r_search["results"]] == pytest.approx([r["rerank_score"] for r in search["results"]], abs=1e-4)
    assert [r["score"] for r in r_search["results"]] == pytest.approx([r["score"] for r in search["results"]], abs=1e-4)
    for mine, theirs in ((rerank, r_rerank), (v2, r_v2)):
        assert [r["index"] for r in theirs["results"]] == [r["index"] for r in mine["results"]]
        assert [r["relevance_score"] for r in theirs["results"]] == pytest.approx(
            [r["relevance_score"] for r in mine["results"]], abs=1e-4)
    remote.close()


def test_wrong_model_name_is_a_clear_error_at_start_up(remote_service):
    with pytest.raises(ConfigurationError) as error:
        connect(remote_service, protocol="cohere", model="no-such-reranker")
    message = error.value.message
    assert "RAG_RERANKERS (gpu)" in message and "no-such-reranker" in message and "HTTP 404" in message
    assert "loaded: tiny" in message  # the engine's own explanation comes along


def test_settings_with_a_json_reranker_list_serve_the_remote_entry(remote_service, minilm_embedder, migrated_sqlite, tmp_path):
    from search_service.app import create_app
    from search_service.services import build_services
    from search_service.settings import Settings

    raw = json.dumps([{"name": "gpu", "remote": {"protocol": "cohere", "url": remote_service, "model": "tiny",
                                                 "timeout_s": 20, "scores": "logits"}}])
    settings = Settings.from_env({"RAG_RERANKERS": raw, "RAG_DATABASE_URL": migrated_sqlite, "RAG_AUTH": "off",
                                  "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_DEVICE": "cpu"})
    services = build_services(settings, embedder=minilm_embedder)
    try:
        client = create_app(services=services).test_client()
        listed = client.get("/v1/rerankers").get_json()
        assert listed["default"] == "gpu" and listed["rerankers"][0]["family"] == "remote"
        body = client.post("/v1/rerank", json={"query": QUERY, "documents": PASSAGES[:3]}).get_json()
        assert body["model"] == "gpu" and len(body["results"]) == 3
        refused = client.post("/v1/rerank", json={"query": QUERY, "documents": ["a"], "max_length": 64})
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "unsupported_option"
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'rag_remote_calls_total{kind="reranker",name="gpu",outcome="ok"}' in metrics
        from search_service.cli.startup import startup_summary

        message, _fields, _warning = startup_summary(settings, services, server="waitress")
        assert "reranker gpu: family remote, device remote, runtime remote, engine cohere at http://127.0.0.1:" in message
        assert 'rag_remote_breaker_state{kind="reranker",name="gpu"} 0.0' in metrics
    finally:
        services.close()


def test_remote_embeddings_equal_local(remote_service, minilm_path, minilm_embedder):
    from search_service.embedding.remote import load_remote_embedder

    config = RemoteConfig(protocol="openai", url=f"{remote_service}/v1", timeout_s=30)
    embedder = load_remote_embedder(config, minilm_path, query_cache_size=0)
    texts = [*DOCUMENTS.values(), *PARAPHRASES.values(), "日本語のテキストです。"]
    try:
        remote = np.vstack([embedder.embed(texts[:5]), embedder.embed(texts[5:], kind="query")])
    finally:
        embedder.close()
    local = np.vstack([minilm_embedder.embed(texts[:5]), minilm_embedder.embed(texts[5:], kind="query")])
    assert embedder.dimension == minilm_embedder.dimension == 384
    assert embedder.max_seq_length == minilm_embedder.max_seq_length
    assert embedder.num_special_tokens == minilm_embedder.num_special_tokens
    assert remote.dtype == np.float32 and remote.shape == local.shape
    np.testing.assert_allclose(remote, local, atol=1e-5)


def test_a_worker_ingests_through_the_remote_embedder(remote_service, minilm_path, minilm_embedder, tiny_reranker, migrated_sqlite, tmp_path):
    """RAG_EMBEDDER_URL: build_services embeds through the engine; a search over what it ingested
    finds what the local embedder finds."""
    from ingestion.pipeline import SourceDocument
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", database_url=migrated_sqlite, embedder_model=minilm_path,
                        embedder_url=f"{remote_service}/v1", embedder_protocol="openai", reranker_model=None,
                        device="cpu", auth="off")
    services = build_services(settings, rerankers=RerankerSet({}, None))
    try:
        assert services.embedder.device == "remote"
        services.ingestion.ingest("docs", [SourceDocument(external_id=k, text=v) for k, v in DOCUMENTS.items()])
        found = services.search.search("docs", PARAPHRASES["coffee.txt"], top_k=3, candidates=5, rerank=False)
    finally:
        services.close()
    assert found["results"][0]["document_id"] == "coffee.txt"
    local = minilm_embedder.embed([found["results"][0]["text"]])[0]
    query = minilm_embedder.embed([PARAPHRASES["coffee.txt"]], kind="query")[0]
    assert found["results"][0]["score"] == pytest.approx(float(local @ query), abs=1e-5)
