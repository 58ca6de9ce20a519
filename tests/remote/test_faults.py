"""Remote engines failing: down, slow past the deadline, flapping (the breaker opens, then closes
after a successful trial), failing then recovering within the retries; and what the API answers
(503 `reranker_unavailable`, or the retrieval order when a search asks for `rerank_fallback`)."""

from __future__ import annotations

import time

import pytest

from search_service.errors import RerankerUnavailableError
from search_service.remote.config import RERANK_PROTOCOLS, RemoteConfig
from search_service.rerankers.runtimes.remote import RemoteReranker
from tests.support.documents import DOCUMENTS, PARAPHRASES
from tests.support.replay_server import replay_server
from tests.support.serve_process import free_port


def tei(url: str, **options) -> RemoteReranker:
    values = {"timeout_s": 5, "retries": 0, "backoff_s": 0.01, **options}
    return RemoteReranker(RemoteConfig(protocol="tei", url=url, **values).check("test", RERANK_PROTOCOLS), name="gpu")


def healthy(path, body):
    return 200, [{"index": i, "score": float(len(text))} for i, text in enumerate(body["texts"])]


def test_down_engine_is_retried_then_unavailable():
    reranker = tei(f"http://127.0.0.1:{free_port()}", retries=2)
    with pytest.raises(RerankerUnavailableError) as error:
        reranker.score("q", ["a", "b"])
    assert error.value.status == 503 and error.value.code == "reranker_unavailable"
    assert "cannot be reached" in error.value.message and "127.0.0.1" not in error.value.message
    assert reranker.client.retries == 2 and reranker.client.calls == {"connect": 1}


def test_slow_engine_fails_at_the_deadline():
    def slow(path, body):
        time.sleep(3)
        return healthy(path, body)

    with replay_server(slow) as server:
        reranker = tei(server.url, timeout_s=0.5, retries=3)
        started = time.monotonic()
        with pytest.raises(RerankerUnavailableError, match=r"no answer within 0.5 s"):
            reranker.score("q", ["a"])
        elapsed = time.monotonic() - started
    assert elapsed < 2.5  # the deadline covers the call, retries included (3 s per attempt otherwise)
    assert len(server.requests) == 1


def test_server_errors_are_retried_with_back_off():
    answers = iter([(503, {"error": "Model is overloaded", "error_type": "overloaded"}), (500, {"error": "boom"})])

    def flaky(path, body):
        return next(answers, None) or healthy(path, body)

    with replay_server(flaky) as server:
        reranker = tei(server.url, retries=2)
        assert reranker.score("q", ["a", "bbb"]) == [1.0, 3.0]
    assert len(server.requests) == 3 and reranker.client.retries == 2
    assert reranker.client.calls == {"ok": 1}


def test_flapping_engine_opens_the_breaker_then_a_trial_closes_it():
    state = {"up": False}

    def flapping(path, body):
        return healthy(path, body) if state["up"] else (500, {"error": "backend down"})

    with replay_server(flapping) as server:
        reranker = tei(server.url, breaker_failures=2, breaker_reset_s=0.5)
        for _ in range(2):
            with pytest.raises(RerankerUnavailableError, match="server errors"):
                reranker.score("q", ["a"])
        assert reranker.client.breaker.state == "open"
        with pytest.raises(RerankerUnavailableError, match="circuit breaker is open") as fast:
            reranker.score("q", ["a"])
        assert len(server.requests) == 2  # refused without calling the engine
        assert 1 <= fast.value.retry_after <= 1
        state["up"] = True
        time.sleep(0.6)
        assert reranker.client.breaker.state == "half_open"
        assert reranker.score("q", ["ab"]) == [2.0]  # the trial call
        assert reranker.client.breaker.state == "closed"
        state["up"] = False
        with pytest.raises(RerankerUnavailableError):
            reranker.score("q", ["a"])
        assert reranker.client.breaker.state == "closed"  # one failure is not enough to open it again
    metrics = reranker.client.metrics()
    assert metrics["breaker_opened"] == 1 and metrics["breaker_state"] == 0
    assert metrics["calls"] == {"server_error": 3, "breaker_open": 1, "ok": 1}


@pytest.fixture
def search_app(app_factory, migrated_sqlite):
    """An app whose reranker is a TEI engine on a port nobody listens on, with documents."""
    from ingestion.pipeline import SourceDocument

    reranker = tei(f"http://127.0.0.1:{free_port()}", breaker_reset_s=60)
    app = app_factory(migrated_sqlite, reranker, reranker_name="gpu")
    app.extensions["search_service"].ingestion.ingest(
        "docs", [SourceDocument(external_id=k, text=v) for k, v in DOCUMENTS.items()])
    yield app
    reranker.close()


def test_api_answers_503_and_falls_back_only_when_asked(search_app):
    client = search_app.test_client()
    query = {"collection": "docs", "query": PARAPHRASES["gil.md"], "top_k": 5}
    refused = client.post("/v1/search", json=query)
    assert refused.status_code == 503
    error = refused.get_json()["error"]
    assert error["code"] == "reranker_unavailable" and 'rerank_fallback: "dense"' in error["message"]
    assert refused.headers["Retry-After"] == "1"

    plain = client.post("/v1/search", json={**query, "rerank": False}).get_json()
    fallback = client.post("/v1/search", json={**query, "rerank_fallback": "dense"})
    assert fallback.status_code == 200
    body = fallback.get_json()
    assert body["reranked"] is False and body["reranker"] == "gpu"
    assert body["rerank_fallback"]["used"] == "dense" and body["rerank_fallback"]["code"] == "reranker_unavailable"
    assert [r["chunk_id"] for r in body["results"]] == [r["chunk_id"] for r in plain["results"]]
    assert all(r["rerank_score"] is None for r in body["results"])
    assert plain["rerank_fallback"] is None

    rerank = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert rerank.status_code == 503 and rerank.get_json()["error"]["code"] == "reranker_unavailable"
    tei_shaped = client.post("/rerank", json={"query": "q", "texts": ["a"], "truncation_direction": "left"})
    assert tei_shaped.status_code == 503  # no tokenizer here: the text goes whole, and the engine is down

    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'rag_rerank_fallbacks_total{code="reranker_unavailable"} 1.0' in metrics
    assert 'rag_remote_breaker_state{kind="reranker",name="gpu"}' in metrics
    assert 'rag_remote_calls_total{kind="reranker",name="gpu",outcome="connect"}' in metrics


def test_openapi_documents_the_fallback_and_the_remote_errors(search_app):
    spec = search_app.test_client().get("/openapi.json").get_json()
    search = spec["paths"]["/v1/search"]["post"]
    assert {"502", "503"} <= set(search["responses"])
    schemas = spec["components"]["schemas"]
    assert schemas["SearchRequest"]["properties"]["rerank_fallback"]["anyOf"][0]["enum"] == ["none", "dense"]
    assert "rerank_fallback" in schemas["SearchResponse"]["properties"]
    assert "503" in spec["paths"]["/v1/rerank"]["post"]["responses"]


def test_breaker_lets_one_trial_through_and_reopens_when_it_fails():
    from search_service.remote.breaker import BreakerOpen, CircuitBreaker

    now = [0.0]
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=lambda: now[0])
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "open" and breaker.opened == 1
    now[0] = 9.0
    with pytest.raises(BreakerOpen) as refused:
        breaker.before_call()
    assert refused.value.retry_after == pytest.approx(1.0)
    now[0] = 10.0
    breaker.before_call()  # the trial
    with pytest.raises(BreakerOpen):
        breaker.before_call()  # a second caller while the trial runs
    breaker.record_failure()  # the trial failed: open for another reset_s
    assert breaker.state == "open" and breaker.opened == 2
    now[0] = 20.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "closed"  # one failure after closing: still below the threshold
