"""Deletes, filters and job listings: search reflects exactly what is stored."""

import pytest

from ingestion.worker import Worker
from tests.support.documents import DOCUMENTS, PARAPHRASES


@pytest.fixture
def app(migrated_url, app_factory):
    return app_factory(migrated_url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def loaded(app, client):
    services = app.extensions["search_service"]
    documents = [
        {"id": name, "text": text, "metadata": {"kind": name.split(".")[1], "rank": i}, "source": f"src/{name}"}
        for i, (name, text) in enumerate(DOCUMENTS.items())
    ]
    client.post("/v1/collections", json={"name": "docs"})
    client.post("/v1/collections/docs/documents", json={"documents": documents})
    assert Worker(services.database, services.ingestion).run_once().status == "indexed"
    return client


def search(client, query, **extra):
    response = client.post("/v1/search", json={"collection": "docs", "query": query, **extra})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def test_deleted_document_never_comes_back(loaded):
    assert search(loaded, PARAPHRASES["panda.md"])[0]["document_id"] == "panda.md"
    assert loaded.delete("/v1/collections/docs/documents/panda.md").status_code == 204
    assert all(r["document_id"] != "panda.md" for r in search(loaded, PARAPHRASES["panda.md"], candidates=100))
    assert loaded.get("/v1/collections/docs/documents/panda.md").status_code == 404
    assert loaded.delete("/v1/collections/docs/documents/panda.md").status_code == 404
    assert loaded.get("/v1/collections/docs").get_json()["documents"] == len(DOCUMENTS) - 1


def test_deleted_collection_is_gone(loaded):
    assert loaded.delete("/v1/collections/docs").status_code == 204
    assert loaded.get("/v1/collections/docs").status_code == 404
    response = loaded.post("/v1/search", json={"collection": "docs", "query": "x"})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "collection_not_found"
    assert loaded.get("/v1/collections").get_json()["collections"] == []


def test_filters_return_the_true_top_among_matching_chunks(loaded):
    query = PARAPHRASES["panda.md"]
    # With one candidate, "search then filter" would return nothing for a non-panda filter.
    results = search(loaded, query, candidates=1, top_k=1, filter={"document_ids": ["coffee.txt"]})
    assert [r["document_id"] for r in results] == ["coffee.txt"]
    results = search(loaded, query, candidates=1, top_k=5, filter={"metadata": {"kind": {"in": ["txt", "html"]}}})
    assert {r["document_id"] for r in results} <= {"volcano.txt", "coffee.txt", "tower.html"} and results
    results = search(loaded, query, filter={"metadata": {"kind": "md"}, "sources": ["src/gil.md"]})
    assert [r["document_id"] for r in results] == ["gil.md"]
    assert search(loaded, query, filter={"metadata": {"missing": 1}}) == []


def test_invalid_filter_is_400(loaded):
    response = loaded.post("/v1/search", json={"collection": "docs", "query": "q", "filter": {"metadata": {"k": {"gt": 1}}}})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_filter"


def test_collection_jobs_are_listed(loaded):
    loaded.post("/v1/collections/docs/documents", json={"documents": [{"id": "new", "text": "fresh text"}]})
    jobs = loaded.get("/v1/collections/docs/jobs").get_json()
    assert jobs["total"] == 2
    assert [j["status"] for j in jobs["jobs"]] == ["pending", "indexed"]  # newest first
    assert loaded.get("/v1/collections/docs/jobs?status=pending").get_json()["total"] == 1
    assert loaded.get("/v1/collections/docs/jobs?status=bogus").status_code == 400
    assert loaded.get("/v1/collections/nope/jobs").status_code == 404
