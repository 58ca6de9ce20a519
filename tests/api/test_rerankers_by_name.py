"""Several rerankers by name (RAG_RERANKERS) through /v1/rerank and /v1/search, and per-request
reranker options: chosen by `model` / `reranker`, validated and bounded (400 with the error shape)."""

from __future__ import annotations

import pytest

from search_service.services import build_services, load_rerankers
from search_service.settings import Settings
from search_service.testing.tiny_llm import make_tiny_llm_reranker
from tests.support.documents import DOCUMENTS, PARAPHRASES

QUERY = "what is panda?"
PASSAGES = [
    "hi",
    "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "Paris is the capital of France.",
    "",
]
PROMPT = "Does passage B answer query A? Say 'Yes' or 'No'."


@pytest.fixture(scope="module")
def rerankers(tiny_reranker_dir, tmp_path_factory):
    llm_dir = make_tiny_llm_reranker(tmp_path_factory.mktemp("checkpoints") / "gemma-tiny")
    settings = Settings(
        rerankers=(("enc", str(tiny_reranker_dir)), ("llm", str(llm_dir))),
        reranker_model=None,
        device="cpu",
    )
    return load_rerankers(settings)


@pytest.fixture
def client(migrated_url, tmp_path, minilm_path, minilm_embedder, rerankers):
    from search_service.app import create_app

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=migrated_url,
        embedder_model=minilm_path,
        rerankers=(("enc", "-"), ("llm", "-")),  # already loaded: `rerankers`
        reranker_model=None,
        device="cpu",
        auth="off",
    )
    services = build_services(settings, embedder=minilm_embedder, rerankers=rerankers)
    app = create_app(services=services)
    app.config["TESTING"] = True
    yield app.test_client()
    services.close()


def rerank(client, **body):
    return client.post(
        "/v1/rerank", json={"query": QUERY, "documents": PASSAGES, "raw_scores": True, **body}
    )


def by_index(response):
    return [
        score
        for _, score in sorted(
            (r["index"], r["relevance_score"]) for r in response.get_json()["results"]
        )
    ]


def assert_error(response, status, code, *fragments):
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    for fragment in fragments:
        assert fragment in error["message"]
    return error


def test_model_picks_a_reranker_by_name(client, rerankers):
    enc, llm = rerankers.pick("enc"), rerankers.pick("llm")
    default = rerank(client)
    assert default.get_json()["model"] == "enc"
    assert by_index(default) == pytest.approx(enc.score(QUERY, PASSAGES), abs=1e-5)
    chosen = rerank(client, model="llm")
    assert chosen.get_json()["model"] == "llm"
    assert by_index(chosen) == pytest.approx(llm.score(QUERY, PASSAGES), abs=1e-5)
    assert by_index(chosen) != pytest.approx(by_index(default), abs=1e-3)
    assert_error(rerank(client, model="gemma"), 404, "reranker_not_found", "'gemma'", "enc, llm")


def test_prompt_reaches_the_llm_family(client, rerankers):
    llm = rerankers.pick("llm")
    response = rerank(client, model="llm", prompt=PROMPT, max_length=64)
    expected = llm.score(QUERY, PASSAGES, prompt=PROMPT, max_length=64)
    assert by_index(response) == pytest.approx(expected, abs=1e-5)
    assert expected != pytest.approx(llm.score(QUERY, PASSAGES), abs=1e-3)


def test_search_picks_the_reranker_and_forwards_options(client, rerankers):
    services = client.application.extensions["search_service"]
    from ingestion.pipeline import SourceDocument

    services.ingestion.ingest(
        "docs", [SourceDocument(external_id=k, text=v) for k, v in DOCUMENTS.items()]
    )
    query = PARAPHRASES["panda.md"]
    body = {"collection": "docs", "query": query, "top_k": 5}
    response = client.post(
        "/v1/search", json={**body, "reranker": "llm", "rerank_options": {"prompt": PROMPT}}
    )
    result = response.get_json()
    assert response.status_code == 200, result
    assert result["reranker"] == "llm"
    expected = rerankers.pick("llm").score(
        query, [r["text"] for r in result["results"]], prompt=PROMPT
    )
    assert [r["rerank_score"] for r in result["results"]] == pytest.approx(expected, abs=1e-5)
    assert client.post("/v1/search", json=body).get_json()["reranker"] == "enc"

    refused = client.post("/v1/search", json={**body, "rerank_options": {"prompt": PROMPT}})
    assert_error(refused, 400, "unsupported_option", "encoder", "prompt")
    off = client.post(
        "/v1/search", json={**body, "rerank": False, "rerank_options": {"max_length": 64}}
    )
    assert_error(off, 400, "invalid_request", "rerank_options need reranking")
    missing = client.post("/v1/search", json={**body, "reranker": "nope"})
    assert_error(missing, 404, "reranker_not_found", "enc, llm")


@pytest.mark.parametrize(
    "body, code, fragment",
    [
        ({"prompt": PROMPT}, "unsupported_option", "the encoder reranker does not support prompt"),
        (
            {"model": "llm", "cutoff_layers": 2},
            "unsupported_option",
            "the llm reranker does not support cutoff_layers",
        ),
        ({"model": "llm", "compress_ratio": 2}, "unsupported_option", "its options: prompt"),
        ({"max_length": 600}, "invalid_request", "exceeds the model's limit of 512"),
        ({"model": "llm", "prompt": "x" * 2001}, "invalid_request", "prompt"),
        ({"model": "llm", "prompt": ""}, "invalid_request", "prompt"),
        ({"compress_ratio": 3}, "invalid_request", "compress_ratio"),
        ({"cutoff_layers": []}, "invalid_request", "cutoff_layers"),
        ({"cutoff_layers": list(range(9))}, "invalid_request", "cutoff_layers"),
        ({"cutoff_layers": "28"}, "invalid_request", "cutoff_layers"),
        ({"compress_layers": [-1]}, "invalid_request", "compress_layers"),
        ({"max_length": 0}, "invalid_request", "max_length"),
        ({"max_length": 100_000}, "invalid_request", "max_length"),
        ({"normalize": True}, "invalid_request", "normalize"),
        (
            {"query_max_length": 8},
            "unsupported_option",
            "the encoder reranker does not support query_max_length",
        ),
        ({"model": "llm", "query_max_length": 0}, "invalid_request", "query_max_length"),
        ({"model": "llm", "query_max_length": "8"}, "invalid_request", "query_max_length"),
        (
            {"model": "llm", "query_max_length": 65, "max_length": 64},
            "invalid_request",
            "query_max_length: 65 exceeds max_length (64)",
        ),
        (
            {"model": "llm", "query_max_length": 513},
            "invalid_request",
            "query_max_length: 513 exceeds max_length (512)",
        ),
    ],
)
def test_bad_options_are_400s(client, body, code, fragment):
    error = assert_error(rerank(client, **body), 400, code, fragment)
    assert set(error) >= {"code", "message"}


def test_rerankers_are_listed(client):
    listing = client.get("/v1/rerankers").get_json()
    assert listing["default"] == "enc"
    assert [(r["name"], r["family"], r["options"]) for r in listing["rerankers"]] == [
        ("enc", "encoder", []),
        ("llm", "llm", ["prompt", "query_max_length"]),
    ]


# A valid value for each per-request option, to send every option /v1/rerankers lists.
OPTION_VALUES = {
    "prompt": PROMPT,
    "query_max_length": 3,
    "cutoff_layers": 8,
    "compress_ratio": 2,
    "compress_layers": [8],
}


def test_every_listed_option_is_accepted_per_request(client):
    for listed in client.get("/v1/rerankers").get_json()["rerankers"]:
        for option in listed["options"]:
            response = rerank(client, model=listed["name"], **{option: OPTION_VALUES[option]})
            assert response.status_code == 200, (listed["name"], option, response.get_json())


def test_query_max_length_reaches_the_llm_family(client, rerankers):
    llm = rerankers.pick("llm")
    query = "what is panda? " * 4
    response = client.post(
        "/v1/rerank",
        json={
            "model": "llm",
            "query": query,
            "documents": PASSAGES,
            "raw_scores": True,
            "query_max_length": 3,
            "max_length": 64,
        },
    )
    assert response.status_code == 200, response.get_json()
    expected = llm.score(query, PASSAGES, query_max_length=3, max_length=64)
    assert by_index(response) == pytest.approx(expected, abs=1e-5)
    # The default budget keeps 48 query tokens: the cut changed the scores.
    assert expected != pytest.approx(llm.score(query, PASSAGES, max_length=64), abs=1e-3)


def test_search_forwards_query_max_length(client, rerankers):
    from ingestion.pipeline import SourceDocument

    services = client.application.extensions["search_service"]
    services.ingestion.ingest(
        "docs", [SourceDocument(external_id=k, text=v) for k, v in DOCUMENTS.items()]
    )
    query = PARAPHRASES["panda.md"]
    body = {"collection": "docs", "query": query, "top_k": 5, "reranker": "llm"}
    response = client.post("/v1/search", json={**body, "rerank_options": {"query_max_length": 2}})
    result = response.get_json()
    assert response.status_code == 200, result
    texts = [r["text"] for r in result["results"]]
    expected = rerankers.pick("llm").score(query, texts, query_max_length=2)
    assert [r["rerank_score"] for r in result["results"]] == pytest.approx(expected, abs=1e-5)
    refused = client.post(
        "/v1/search", json={**body, "reranker": "enc", "rerank_options": {"query_max_length": 2}}
    )
    assert_error(refused, 400, "unsupported_option", "encoder", "query_max_length")
