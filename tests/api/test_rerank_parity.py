"""/v1/rerank and /v1/search scores equal FlagEmbedding's FlagReranker on the same checkpoint."""

import math

import pytest

from tests.reference.env import flag_scores_batch
from tests.support.documents import DOCUMENTS, PARAPHRASES

pytestmark = pytest.mark.slow

QUERY = "what is panda?"
PASSAGES = [
    "hi",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China.",
    "",
    "大熊猫主要吃竹子,也吃少量的肉。",
    "Paris is the capital of France.",
    "Bears eat bamboo, fish, honey and berries in the forests and mountains. " * 40,
]


@pytest.fixture
def app(tmp_path, app_factory, tiny_reranker):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    return app_factory(url, tiny_reranker)


def test_rerank_endpoint_matches_flagembedding(app, tiny_reranker_dir):
    client = app.test_client()
    raw, normalized = flag_scores_batch(
        tiny_reranker_dir,
        [
            {"pairs": [[QUERY, p] for p in PASSAGES], "normalize": False},
            {"pairs": [[QUERY, p] for p in PASSAGES], "normalize": True},
        ],
    )
    assert max(raw) - min(raw) > 0.05  # the tiny model must tell the passages apart

    body = client.post("/v1/rerank", json={"query": QUERY, "documents": PASSAGES, "raw_scores": True}).get_json()
    by_index = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert [by_index[i] for i in range(len(PASSAGES))] == pytest.approx(raw, abs=1e-4)
    assert [r["index"] for r in body["results"]] == sorted(range(len(raw)), key=lambda i: -raw[i])

    documents = [{"text": p} for p in PASSAGES]
    body = client.post(
        "/v1/rerank", json={"query": QUERY, "documents": documents, "top_n": 3, "return_documents": True}
    ).get_json()
    assert len(body["results"]) == 3
    for result in body["results"]:
        assert result["relevance_score"] == pytest.approx(normalized[result["index"]], abs=1e-4)
        assert result["document"]["text"] == PASSAGES[result["index"]]
    assert body["id"] and body["meta"]


def test_search_rerank_scores_match_flagembedding(app, tiny_reranker_dir):
    client = app.test_client()
    documents = [{"id": name, "text": text} for name, text in DOCUMENTS.items()]
    services = app.extensions["search_service"]
    from ingestion.pipeline import SourceDocument

    services.ingestion.ingest("docs", [SourceDocument(external_id=d["id"], text=d["text"]) for d in documents])
    query = PARAPHRASES["volcano.txt"]
    response = client.post("/v1/search", json={"collection": "docs", "query": query, "top_k": 5, "candidates": 50}).get_json()
    assert response["reranked"] is True
    results = response["results"]
    [reference] = flag_scores_batch(tiny_reranker_dir, [{"pairs": [[query, r["text"]] for r in results], "normalize": False}])
    assert [r["rerank_score"] for r in results] == pytest.approx(reference, abs=1e-4)
    for result in results:
        assert result["score"] == pytest.approx(1 / (1 + math.exp(-result["rerank_score"])), abs=1e-9)
        assert result["dense_rank"] >= 1 and -1.0 <= result["dense_score"] <= 1.0
    assert [r["rerank_score"] for r in results] == sorted((r["rerank_score"] for r in results), reverse=True)
