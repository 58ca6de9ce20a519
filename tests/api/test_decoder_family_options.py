"""Decoder-family options (lightweight, layerwise) through the API: validated, then applied."""

import pytest

from search_service.rerankers import load_reranker
from search_service.testing.tiny_lightweight import make_local_lightweight_reranker

PASSAGES = ["Bees make honey in hives.", "Owls hunt at night.", ""]
DOCUMENTS = [
    "Bees make honey in hives.",
    "Owls hunt at night.",
    "Honey bees live in colonies; the queen lays the eggs and the workers gather nectar all day.",
    "熊猫吃竹子,也吃少量的肉。",
]
LIGHTWEIGHT_OPTIONS = {"cutoff_layers": 3, "compress_ratio": 2, "compress_layers": [1, 2]}
BAD_OPTIONS = [
    ({"cutoff_layers": 9}, "no score head"),
    ({"cutoff_layers": [1, 2]}, "one layer per request"),
    ({"compress_ratio": 3}, "compress_ratio"),
    ({"compress_layers": [7]}, "beyond the model"),
]


@pytest.fixture(scope="module")
def lightweight(tmp_path_factory):
    return load_reranker(
        str(make_local_lightweight_reranker(tmp_path_factory.mktemp("lw"))), device="cpu"
    )


@pytest.fixture
def app(tmp_path, app_factory, lightweight):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    return app_factory(url, lightweight)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def search_client(app):
    """A client whose app has the collection "docs" holding DOCUMENTS, one chunk each."""
    from ingestion.pipeline import SourceDocument

    services = app.extensions["search_service"]
    documents = [SourceDocument(external_id=f"d{i}", text=t) for i, t in enumerate(DOCUMENTS)]
    services.ingestion.ingest("docs", documents)
    return app.test_client()


def test_options_are_applied(client, lightweight):
    options = {
        "cutoff_layers": 2,
        "compress_ratio": 2,
        "compress_layers": [1],
        "prompt": "Does B answer A?",
    }
    body = client.post(
        "/v1/rerank",
        json={"query": "who makes honey", "documents": PASSAGES, "raw_scores": True, **options},
    )
    assert body.status_code == 200, body.get_json()
    scores = {r["index"]: r["relevance_score"] for r in body.get_json()["results"]}
    expected = lightweight.score("who makes honey", PASSAGES, **options)
    assert [scores[i] for i in range(3)] == pytest.approx(expected, abs=1e-5)
    default = lightweight.score("who makes honey", PASSAGES)
    # the options changed something
    assert max(abs(a - b) for a, b in zip(expected, default, strict=True)) > 1e-4


@pytest.mark.parametrize("options, fragment", BAD_OPTIONS)
def test_bad_options_are_400(client, options, fragment):
    response = client.post("/v1/rerank", json={"query": "q", "documents": PASSAGES, **options})
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]["message"]


def _search(client, **body):
    response = client.post(
        "/v1/search", json={"collection": "docs", "top_k": len(DOCUMENTS), **body}
    )
    assert response.status_code == 200, response.get_json()
    found = response.get_json()
    assert found["reranked"] is True and found["reranker"] == "tiny-reranker"
    assert sorted(r["text"] for r in found["results"]) == sorted(DOCUMENTS)
    return found


def test_lightweight_options_through_search(search_client, lightweight):
    """rerank_options reach the lightweight reranker in /v1/search; the rerank cache keeps the
    default scores and the optioned ones apart (the default search runs first)."""
    query = "who makes honey"
    plain = _search(search_client, query=query)
    texts = [r["text"] for r in plain["results"]]
    default = lightweight.score(query, texts)
    assert [r["rerank_score"] for r in plain["results"]] == pytest.approx(default, abs=1e-5)

    found = _search(search_client, query=query, rerank_options=LIGHTWEIGHT_OPTIONS)
    texts = [r["text"] for r in found["results"]]
    scores = [r["rerank_score"] for r in found["results"]]
    expected = lightweight.score(query, texts, **LIGHTWEIGHT_OPTIONS)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert scores == sorted(scores, reverse=True)  # ranked by the optioned scores
    # the options changed something
    default = dict(zip(texts, lightweight.score(query, texts), strict=True))
    assert max(abs(default[text] - value) for text, value in zip(texts, expected)) > 1e-4

    # A prompt and max_length go through as well.
    more = {"cutoff_layers": 2, "prompt": "Does B answer A?", "max_length": 16}
    found = _search(search_client, query=query, rerank_options=more)
    texts = [r["text"] for r in found["results"]]
    expected = lightweight.score(query, texts, **more)
    assert [r["rerank_score"] for r in found["results"]] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "options, fragment",
    [*BAD_OPTIONS, ({"compress_ratio": 2, "compress_layers": [0.5]}, "compress_layers")],
)
def test_bad_search_options_are_400(search_client, options, fragment):
    body = {"collection": "docs", "query": "q", "rerank_options": options}
    response = search_client.post("/v1/search", json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()
    assert set(error) == {"error"} and set(error["error"]) >= {"code", "message"}
    assert error["error"]["code"] == "invalid_request"
    assert fragment in error["error"]["message"]


def test_search_options_without_reranking_are_400(search_client):
    body = {
        "collection": "docs",
        "query": "q",
        "rerank": False,
        "rerank_options": LIGHTWEIGHT_OPTIONS,
    }
    response = search_client.post("/v1/search", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


@pytest.mark.slow
def test_layerwise_reranker_through_search_and_rerank(tmp_path, app_factory):
    """The layerwise family end to end: a cutoff layer through /v1/rerank and /v1/search."""
    from ingestion.pipeline import SourceDocument
    from search_service.store.db import migrate
    from tests.reference.checkpoints import make_tiny_layerwise_reranker

    reranker = load_reranker(
        str(make_tiny_layerwise_reranker(tmp_path / "layerwise")), device="cpu"
    )
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    app = app_factory(url, reranker)
    client = app.test_client()
    layer = reranker.layers[0]
    body = client.post(
        "/v1/rerank",
        json={
            "query": "who makes honey",
            "documents": PASSAGES,
            "raw_scores": True,
            "cutoff_layers": layer,
        },
    ).get_json()
    scores = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert [scores[i] for i in range(3)] == pytest.approx(
        reranker.score("who makes honey", PASSAGES, cutoff_layers=layer), abs=1e-5
    )
    services = app.extensions["search_service"]
    services.ingestion.ingest(
        "docs", [SourceDocument(external_id=f"d{i}", text=t) for i, t in enumerate(PASSAGES[:2])]
    )
    search = client.post(
        "/v1/search",
        json={"collection": "docs", "query": "honey", "rerank_options": {"cutoff_layers": layer}},
    ).get_json()
    assert search["reranked"] is True
    texts = [r["text"] for r in search["results"]]
    assert [r["rerank_score"] for r in search["results"]] == pytest.approx(
        reranker.score("honey", texts, cutoff_layers=layer), abs=1e-5
    )
