"""Every error, including Flask's own, has the shape {"error": {"code", "message"}} and is a 4xx."""

import io

import pytest


@pytest.fixture
def client(migrated_url, app_factory):
    return app_factory(migrated_url, max_upload_bytes=20_000).test_client()


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize(
    "method, path, kwargs, status, code",
    [
        ("get", "/nope", {}, 404, "not_found"),
        ("delete", "/v1/search", {}, 405, "method_not_allowed"),
        ("post", "/v1/search", {"data": "{not json", "content_type": "application/json"}, 400, "invalid_request"),
        ("post", "/v1/search", {"data": "", "content_type": "application/json"}, 400, "invalid_json"),
        ("post", "/v1/search", {"json": ["a", "list"]}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs"}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": 5}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": ""}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": "q", "top_k": 0}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": "q", "top_k": "5"}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": "q", "candidates": 10**9}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": "q" * 9000}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": "q", "surprise": 1}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "missing", "query": "q", "rerank": False}}, 404, "collection_not_found"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": "q", "rerank": True}}, 400, "reranker_not_configured"),
        ("post", "/v1/rerank", {"json": {"query": "q", "documents": ["a"]}}, 400, "reranker_not_configured"),
        ("post", "/v1/rerank", {"json": {"query": "q", "documents": []}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": " \t\n "}}, 400, "invalid_request"),
        ("post", "/v1/rerank", {"json": {"query": "   ", "documents": ["a"]}}, 400, "invalid_request"),
        ("post", "/v1/search", {"json": {"collection": "docs", "query": "q", "rerank_options": {"max_length": 64}}}, 400, "reranker_not_configured"),
        ("post", "/v1/collections/missing/documents", {"json": {"documents": [{"id": "a", "text": "t"}]}}, 404, "collection_not_found"),
        ("get", "/v1/collections/missing", {}, 404, "collection_not_found"),
        ("get", "/v1/collections/missing/documents", {}, 404, "collection_not_found"),
        ("get", "/v1/collections/missing/documents/x", {}, 404, "collection_not_found"),
        ("get", "/v1/collections/x/documents?limit=0", {}, 400, "invalid_request"),
        ("get", "/v1/collections/x/documents?limit=abc", {}, 400, "invalid_request"),
        ("get", "/v1/jobs/not-a-uuid", {}, 404, "job_not_found"),
        ("get", "/v1/jobs/3f1c2a64-0000-4000-8000-000000000000", {}, 404, "job_not_found"),
        ("post", "/v1/collections", {"json": {"name": "bad name!"}}, 400, "invalid_collection_name"),
        ("post", "/v1/collections", {"json": {"name": "ok", "chunk_tokens": 2}}, 400, "invalid_request"),
        ("post", "/v1/collections/bad%20name/documents", {"json": {"documents": [{"id": "a", "text": "t"}]}}, 400, "invalid_collection_name"),
        ("post", "/v1/collections/docs/documents", {"json": {"documents": []}}, 400, "invalid_request"),
        ("post", "/v1/collections/docs/documents", {"json": {"documents": [{"id": "a"}]}}, 400, "invalid_request"),
        ("post", "/v1/collections/docs/documents", {"json": {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}}, 400, "duplicate_document_id"),
        ("post", "/v1/collections/docs/documents", {"data": {"other": "x"}, "content_type": "multipart/form-data"}, 400, "missing_file"),
    ],
)
def test_error_shape(client, method, path, kwargs, status, code):
    assert_error(getattr(client, method)(path, **kwargs), status, code)


def test_oversized_upload_is_413(client):
    data = {"file": (io.BytesIO(b"x" * 40_000), "big.txt")}
    response = client.post("/v1/collections/docs/documents", data=data, content_type="multipart/form-data")
    assert_error(response, 413, "payload_too_large")
    assert client.get("/v1/collections/docs").status_code == 404  # nothing half-created


def test_invalid_multipart_metadata(client):
    data = {"file": (io.BytesIO(b"hello"), "a.txt"), "metadata": "[1, 2]"}
    response = client.post("/v1/collections/docs/documents", data=data, content_type="multipart/form-data")
    assert_error(response, 400, "invalid_metadata")


def test_health_endpoints(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "auth_required": False}  # this app: auth off
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["database"] is True


def test_a_collection_of_another_dimension_is_409_not_500(client):
    from search_service.store import collections as store

    services = client.application.extensions["search_service"]
    with services.database.session() as session:
        store.create_collection(
            session, "other", embedder_model="BAAI/bge-m3", dimension=1024, chunk_tokens=64, chunk_overlap=8
        )
    response = client.post("/v1/search", json={"collection": "other", "query": "pandas", "rerank": False})
    assert_error(response, 409, "embedding_dimension_mismatch")
    message = response.get_json()["error"]["message"]
    assert "1024" in message and "RAG_EMBEDDER_MODEL=BAAI/bge-m3" in message
    for mode in ("sparse", "hybrid"):  # sparse alone never embeds the query: it still works
        response = client.post("/v1/search", json={"collection": "other", "query": "pandas", "mode": mode, "rerank": False})
        assert response.status_code == (200 if mode == "sparse" else 409), response.get_json()


def test_upload_to_a_missing_collection_is_404_and_creates_nothing(client):
    data = {"file": (io.BytesIO(b"hello"), "a.txt")}
    response = client.post("/v1/collections/typo/documents", data=data, content_type="multipart/form-data")
    assert_error(response, 404, "collection_not_found")
    assert client.get("/v1/collections/typo").status_code == 404
    assert client.post("/v1/collections", json={"name": "typo"}).status_code == 201  # creating is explicit
    data = {"file": (io.BytesIO(b"hello"), "a.txt")}
    assert client.post("/v1/collections/typo/documents", data=data, content_type="multipart/form-data").status_code == 202


def test_without_a_reranker_each_endpoint_says_what_to_do(client):
    """`rerank` left out searches without one; explicit true, or /v1/rerank, gets a fitting 400."""
    client.post("/v1/collections", json={"name": "docs"})
    response = client.post("/v1/search", json={"collection": "docs", "query": "pandas"})
    assert response.status_code == 200 and response.get_json()["reranked"] is False
    message = client.post("/v1/search", json={"collection": "docs", "query": "q", "rerank": True}).get_json()
    assert "leave rerank out" in message["error"]["message"]
    message = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).get_json()["error"]["message"]
    assert "RAG_RERANKER_MODEL" in message and "rerank: false" not in message and "rerank" in message
    message = client.post("/v1/search", json={"collection": "docs", "query": " "}).get_json()["error"]["message"]
    assert "whitespace" in message
