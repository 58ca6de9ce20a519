"""Decoder-family options (lightweight, layerwise) through the API: validated, then applied."""

import pytest

from search_service.rerankers import load_reranker
from tests.support.tiny_lightweight import make_local_lightweight_reranker

PASSAGES = ["Bees make honey in hives.", "Owls hunt at night.", ""]


@pytest.fixture(scope="module")
def lightweight(tmp_path_factory):
    return load_reranker(str(make_local_lightweight_reranker(tmp_path_factory.mktemp("lw"))), device="cpu")


@pytest.fixture
def client(tmp_path, app_factory, lightweight):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    return app_factory(url, lightweight).test_client()


def test_options_are_applied(client, lightweight):
    options = {"cutoff_layers": 2, "compress_ratio": 2, "compress_layers": [1], "prompt": "Does B answer A?"}
    body = client.post("/v1/rerank", json={"query": "who makes honey", "documents": PASSAGES, "raw_scores": True, **options})
    assert body.status_code == 200, body.get_json()
    scores = {r["index"]: r["relevance_score"] for r in body.get_json()["results"]}
    expected = lightweight.score("who makes honey", PASSAGES, **options)
    assert [scores[i] for i in range(3)] == pytest.approx(expected, abs=1e-5)
    default = lightweight.score("who makes honey", PASSAGES)
    assert max(abs(a - b) for a, b in zip(expected, default)) > 1e-4  # the options changed something


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"cutoff_layers": 9}, "no score head"),
        ({"cutoff_layers": [1, 2]}, "one layer per request"),
        ({"compress_ratio": 3}, "compress_ratio"),
        ({"compress_layers": [7]}, "beyond the model"),
    ],
)
def test_bad_options_are_400(client, options, fragment):
    response = client.post("/v1/rerank", json={"query": "q", "documents": PASSAGES, **options})
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]["message"]


@pytest.mark.slow
def test_layerwise_reranker_through_search_and_rerank(tmp_path, app_factory):
    """The layerwise family end to end: a cutoff layer through /v1/rerank and /v1/search."""
    from ingestion.pipeline import SourceDocument
    from search_service.store.db import migrate
    from tests.support.tiny_layerwise import make_tiny_layerwise_reranker

    reranker = load_reranker(str(make_tiny_layerwise_reranker(tmp_path / "layerwise")), device="cpu")
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    app = app_factory(url, reranker)
    client = app.test_client()
    layer = list(reranker.layers)[0]
    body = client.post("/v1/rerank", json={"query": "who makes honey", "documents": PASSAGES, "raw_scores": True, "cutoff_layers": layer}).get_json()
    scores = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert [scores[i] for i in range(3)] == pytest.approx(reranker.score("who makes honey", PASSAGES, cutoff_layers=layer), abs=1e-5)
    services = app.extensions["search_service"]
    services.ingestion.ingest("docs", [SourceDocument(external_id=f"d{i}", text=t) for i, t in enumerate(PASSAGES[:2])])
    search = client.post("/v1/search", json={"collection": "docs", "query": "honey", "rerank_options": {"cutoff_layers": layer}}).get_json()
    assert search["reranked"] is True
    texts = [r["text"] for r in search["results"]]
    assert [r["rerank_score"] for r in search["results"]] == pytest.approx(reranker.score("honey", texts, cutoff_layers=layer), abs=1e-5)
