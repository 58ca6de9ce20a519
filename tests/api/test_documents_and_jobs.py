"""Uploads over HTTP become jobs; the worker indexes them; a running app sees them at once."""

import io
import json
import uuid

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import stream_encode_multipart

from ingestion.worker import Worker
from tests.support.documents import DOCUMENTS, PARAPHRASES
from tests.support.small_chunks import create_small_chunk_collection


@pytest.fixture
def app(migrated_url, app_factory):
    return app_factory(migrated_url)


@pytest.fixture
def client(app):
    client = app.test_client()
    for name in ("docs", "web"):  # uploads go to existing collections (404 otherwise)
        assert client.post("/v1/collections", json={"name": name}).status_code == 201
    return client


@pytest.fixture
def worker(app):
    services = app.extensions["search_service"]
    return Worker(services.database, services.ingestion, poll_seconds=0.01)


def test_json_documents_are_queued_then_indexed(client, worker):
    documents = [{"id": name, "text": text, "metadata": {"lang": "en", "n": i}} for i, (name, text) in enumerate(DOCUMENTS.items())]
    response = client.post("/v1/collections/docs/documents", json={"documents": documents})
    assert response.status_code == 202
    body = response.get_json()
    assert uuid.UUID(body["job_id"]) and body["status"] == "pending"
    assert response.headers["Location"].endswith(f"/v1/jobs/{body['job_id']}")
    assert client.get(response.headers["Location"]).get_json()["status"] == "pending"

    job = worker.run_once()
    assert job.status == "indexed", job.error
    status = client.get(f"/v1/jobs/{body['job_id']}").get_json()
    assert status["status"] == "indexed"
    assert {d["status"] for d in status["result"]["documents"]} == {"added"}

    search = client.post("/v1/search", json={"collection": "docs", "query": PARAPHRASES["gil.md"]}).get_json()
    assert search["results"][0]["document_id"] == "gil.md"
    assert search["results"][0]["metadata"] == {"lang": "en", "n": 4}
    assert search["reranked"] is False
    assert set(search["timings_ms"]) >= {"embed", "search", "rerank", "db", "total"}


def test_multipart_upload_with_id_and_metadata(client, worker):
    data = {
        "file": (io.BytesIO(DOCUMENTS["tower.html"].encode()), "tower.html", "text/html"),
        "id": "landmarks/eiffel",
        "metadata": json.dumps({"city": "Paris"}),
    }
    response = client.post("/v1/collections/web/documents", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    assert worker.run_once().status == "indexed"
    document = client.get("/v1/collections/web/documents/landmarks/eiffel").get_json()
    assert document["metadata"] == {"city": "Paris"}
    assert document["source"] == "tower.html"
    text = " ".join(c["text"] for c in document["chunks"])
    assert "330 metres" in text and "tracking" not in text and "cookie" not in text
    listing = client.get("/v1/collections/web/documents").get_json()
    assert listing["total"] == 1 and listing["documents"][0]["document_id"] == "landmarks/eiffel"


def test_a_bad_upload_ends_as_a_failed_job_with_the_reason(client, worker):
    data = {"file": (io.BytesIO(b"%PDF-1.4\x00\x01binary"), "scan.txt")}
    response = client.post("/v1/collections/docs/documents", data=data, content_type="multipart/form-data")
    job = worker.run_once()
    assert job.status == "failed"
    status = client.get(response.headers["Location"]).get_json()
    assert status["status"] == "failed" and "pdf" in status["error"].lower()


def test_uploading_an_unchanged_document_again_is_a_noop(client, worker):
    payload = {"documents": [{"id": "a", "text": DOCUMENTS["coffee.txt"]}]}
    client.post("/v1/collections/docs/documents", json=payload)
    worker.run_once()
    chunks = client.get("/v1/collections/docs/documents/a").get_json()["chunks"]
    client.post("/v1/collections/docs/documents", json=payload)
    job = worker.run_once()
    assert job.result["documents"][0]["status"] == "unchanged"
    assert client.get("/v1/collections/docs/documents/a").get_json()["chunks"] == chunks


def test_pagination(client, worker):
    docs = [{"id": f"doc-{i:02d}", "text": f"Document number {i} about topic {i}."} for i in range(7)]
    client.post("/v1/collections/docs/documents", json={"documents": docs})
    worker.run_once()
    page = client.get("/v1/collections/docs/documents?limit=3&offset=3").get_json()
    assert page["total"] == 7
    assert [d["document_id"] for d in page["documents"]] == ["doc-03", "doc-04", "doc-05"]
    assert client.get("/v1/collections/docs").get_json()["documents"] == 7


def test_worker_loop_stops_after_max_jobs(client, worker):
    for i in range(2):
        client.post("/v1/collections/docs/documents", json={"documents": [{"id": str(i), "text": f"text {i}"}]})
    assert worker.run(max_jobs=2) == 2
    assert worker.run_once() is None


def test_pdf_docx_and_corpus_uploads_keep_pages_headings_and_ids(app, client, worker):
    from tests.support.files import make_corpus, make_docx, make_pdf

    pdf = make_pdf(["Page one is about glaciers.", "Page two is about comets and their tails.", "Page three: tides."])
    uploads = {
        "report.pdf": pdf,
        "guide.docx": make_docx([("Heading 1", "Setup"), ("Normal", "Install the heat pump outdoors.")]),
        "corpus.jsonl": make_corpus([{"_id": "d1", "title": "Bees", "text": "Bees make honey."}, {"_id": "d2", "title": "Owls", "text": "Owls hunt at night."}]),
    }
    create_small_chunk_collection(app.extensions["search_service"], "files", 12)
    for name, data in uploads.items():
        response = client.post("/v1/collections/files/documents", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")
        assert response.status_code == 202
        job = worker.run_once()
        assert job.status == "indexed", job.error
    pdf_chunks = client.get("/v1/collections/files/documents/report.pdf").get_json()["chunks"]
    assert [c["metadata"]["page"] for c in pdf_chunks if "comets" in c["text"]] == [2]
    assert [c["metadata"]["page"] for c in pdf_chunks if "glaciers" in c["text"]] == [1]
    docx = client.get("/v1/collections/files/documents/guide.docx").get_json()
    assert docx["chunks"][0]["metadata"]["heading_path"] == ["Setup"]
    owls = client.get("/v1/collections/files/documents/d2").get_json()
    assert owls["metadata"]["title"] == "Owls" and "Owls hunt" in owls["chunks"][0]["text"]
    hits = client.post("/v1/search", json={"collection": "files", "query": "comet tails", "top_k": 1}).get_json()
    assert hits["results"][0]["document_id"] == "report.pdf"


def test_a_decompression_bomb_fails_its_job_and_nothing_else(client, worker):
    from tests.support.files import docx_bomb

    client.post("/v1/collections/docs/documents", json={"documents": [{"id": "keep", "text": "Bees make honey."}]})
    assert worker.run_once().status == "indexed"
    # Encoded in memory: the test client would spool a body over 500 KB to a temporary file it
    # never closes (a ResourceWarning, an error under this suite's settings).
    stream, _length, boundary = stream_encode_multipart({"file": FileStorage(io.BytesIO(docx_bomb()), "bomb.docx")}, use_tempfile=False)
    response = client.post("/v1/collections/docs/documents", data=stream.read(), content_type=f"multipart/form-data; boundary={boundary}")
    job = worker.run_once()
    assert job.status == "failed" and "document_too_large" in job.error
    assert client.get(response.headers["Location"]).get_json()["status"] == "failed"
    assert client.get("/v1/collections/docs/documents/keep").status_code == 200
