"""What a job says when it ends, on SQLite and PostgreSQL: JSON documents are text, reports of
what was created or replaced, permanent versus transient errors, hints for unclaimed jobs."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from ingestion.worker import Worker
from search_service.store import collections as store
from search_service.store.jobs import UNCLAIMED_HINT, create_job, get_job
from tests.support.files import make_corpus


@pytest.fixture
def app(migrated_url, app_factory):
    return app_factory(migrated_url, job_unclaimed_warn_s=0.3)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def services(app):
    return app.extensions["search_service"]


@pytest.fixture
def worker(services):
    return Worker(services.database, services.ingestion, poll_seconds=0.01, retry_backoff_seconds=0.5)


def upload(client, *documents, collection="docs", headers=None):
    response = client.post(f"/v1/collections/{collection}/documents", json={"documents": list(documents)},
                           headers=headers or {})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def document_ids(client, collection="docs"):
    return sorted(d["document_id"] for d in client.get(f"/v1/collections/{collection}/documents").get_json()["documents"])


def test_a_json_document_is_text_never_a_corpus_or_a_file(client, worker):
    upload(client, {"id": "victim", "text": "The original victim text about lighthouses."})
    worker.run_once()
    corpus_lines = '{"_id": "victim", "text": "overwritten!"}\n{"_id": "third", "text": "a third doc"}'
    job_id = upload(client, {"id": "attacker", "text": corpus_lines}, {"id": "report.pdf", "text": "Plain text, not a PDF."})
    assert worker.run_once().status == "indexed"
    assert document_ids(client) == ["attacker", "report.pdf", "victim"]
    victim = client.get("/v1/collections/docs/documents/victim").get_json()
    assert "lighthouses" in victim["chunks"][0]["text"]
    attacker = client.get("/v1/collections/docs/documents/attacker").get_json()
    assert '"_id": "victim"' in attacker["chunks"][0]["text"]  # stored as the text it was
    report = client.get(f"/v1/jobs/{job_id}").get_json()["documents"]
    assert report == {"created": ["attacker", "report.pdf"], "replaced": [], "unchanged": [], "failed": []}


def test_format_says_how_to_read_a_json_document(client, worker):
    upload(client, {"id": "md", "format": "markdown", "text": "# Setup\n\nInstall the pump outdoors."},
           {"id": "page", "format": "html", "text": "<html><body><h1>Bees</h1><p>Bees make honey.</p></body></html>"},
           {"id": "plain", "text": "# not a heading, just text"})
    assert worker.run_once().status == "indexed"
    md = client.get("/v1/collections/docs/documents/md").get_json()["chunks"][0]
    assert md["metadata"]["heading_path"] == ["Setup"]
    page = client.get("/v1/collections/docs/documents/page").get_json()["chunks"][0]
    assert "<p>" not in page["text"] and "Bees make honey." in page["text"]
    plain = client.get("/v1/collections/docs/documents/plain").get_json()["chunks"][0]
    assert plain["text"] == "# not a heading, just text" and "heading_path" not in plain["metadata"]
    bad = client.post("/v1/collections/docs/documents", json={"documents": [{"id": "x", "text": "t", "format": "pdf"}]})
    assert bad.status_code == 400


def test_a_corpus_file_reports_created_replaced_and_unchanged(client, worker):
    def send(rows):
        data = make_corpus(rows)
        response = client.post("/v1/collections/docs/documents", data={"file": (io.BytesIO(data), "corpus.jsonl")},
                               content_type="multipart/form-data")
        worker.run_once()
        return client.get(response.headers["Location"]).get_json()

    first = send([{"_id": "d1", "text": "Owls hunt at night."}, {"_id": "d2", "text": "Bees make honey."}])
    assert first["status"] == "indexed" and first["documents"]["created"] == ["d1", "d2"]
    second = send([{"_id": "d1", "text": "Owls hunt at night."}, {"_id": "d2", "text": "Bees dance."}])
    assert second["documents"]["unchanged"] == ["d1"] and second["documents"]["replaced"] == ["d2"]


def test_a_job_with_a_failed_document_does_not_say_indexed(client, worker):
    mixed = upload(client, {"id": "good", "text": "Comets have tails."}, {"id": "blank", "text": "   "})
    assert worker.run_once().status == "indexed_with_errors"
    shown = client.get(f"/v1/jobs/{mixed}").get_json()
    assert shown["documents"]["created"] == ["good"]
    assert shown["documents"]["failed"] == [{"id": "blank", "code": "empty_document", "message": "The document is empty."}]
    assert shown["error_code"] == "empty_document"
    only_bad = upload(client, {"id": "blank2", "text": "\n"})
    assert worker.run_once().status == "failed"
    assert client.get(f"/v1/jobs/{only_bad}").get_json()["error_code"] == "empty_document"
    listed = client.get("/v1/collections/docs/jobs?status=indexed_with_errors").get_json()
    assert [job["job_id"] for job in listed["jobs"]] == [mixed]


@pytest.mark.parametrize("document", [
    {"id": "nul", "text": "a NUL \u0000 inside"},
    {"id": "inf", "text": "finite text", "metadata": {"score": float("inf")}},
])
def test_content_the_database_rejects_fails_once_and_leaks_no_sql(services, client, worker, migrated_url, document):
    with services.database.session() as session:
        target = services.ingestion.ensure_collection(session, "docs")
        job_id = create_job(session, target, kind="documents", payload=json.dumps([document]).encode()).id
    job = worker.run_once()
    upload(client, {"id": "next", "text": "The worker goes on."})
    assert worker.run_once().status == "indexed"
    if migrated_url.startswith("postgresql"):  # PostgreSQL refuses NUL in text and Infinity in JSON
        assert (job.status, job.error_code, job.attempts) == ("failed", "content_rejected", 1)
        shown = client.get(f"/v1/jobs/{job_id}").get_json()
        for leak in ("INSERT", "SELECT", "UPDATE", "psycopg", "[SQL", "parameters", "/"):
            assert leak not in shown["error"], shown["error"]
    else:  # SQLite stores both as they are
        assert job.status == "indexed"


def test_a_transient_error_is_retried_after_a_back_off(services, client, worker, monkeypatch):
    job_id = upload(client, {"id": "a", "text": "Tides follow the moon."})
    real_embed = services.ingestion.embedder.embed
    calls = []

    def flaky(texts, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device: '/secret/path'")
        return real_embed(texts, **kwargs)

    monkeypatch.setattr(services.ingestion.embedder, "embed", flaky)
    first = worker.run_once()
    assert (first.status, first.error_code) == ("pending", "system_error") and "/secret" not in first.error
    assert worker.run_once() is None  # held back by its back-off
    time.sleep(0.6)
    done = worker.run_once()
    assert (done.status, done.attempts, done.error) == ("indexed", 2, None)
    assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "indexed"


def test_a_job_nobody_claims_says_so(app, services, client, worker, caplog):
    from ingestion.supervision import UnclaimedJobsWatch

    job_id = upload(client, {"id": "a", "text": "Waiting for a worker."}, headers={"X-Request-ID": "req-upload-1"})
    assert "hint" not in client.get(f"/v1/jobs/{job_id}").get_json()
    time.sleep(0.4)
    shown = client.get(f"/v1/jobs/{job_id}").get_json()
    assert shown["hint"] == UNCLAIMED_HINT and shown["request_id"] == "req-upload-1"
    assert client.get("/v1/collections/docs/jobs").get_json()["jobs"][0]["hint"] == UNCLAIMED_HINT
    watch = UnclaimedJobsWatch(services.database, 0.3)
    with caplog.at_level(logging.INFO):
        assert watch.check() and watch.check()  # stuck twice, warned once
        assert sum("no ingestion worker has been seen" in r.getMessage() for r in caplog.records) == 1
        job = worker.run_once()
    assert job.status == "indexed" and "hint" not in client.get(f"/v1/jobs/{job_id}").get_json()
    assert not watch.check()
    claimed = [r for r in caplog.records if r.name == "ingestion.worker" and getattr(r, "job_id", None) == job_id]
    assert claimed and all(r.request_id == "req-upload-1" for r in claimed)


def test_chunking_bounds_are_enforced_at_collection_creation(client):
    for body in ({"chunk_tokens": 16}, {"chunk_tokens": 64, "chunk_overlap": 33}, {"chunk_tokens": 8, "chunk_overlap": 7}):
        response = client.post("/v1/collections", json={"name": "c", **body})
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] in ("invalid_chunk_size", "invalid_request")
    created = client.post("/v1/collections", json={"name": "c", "chunk_tokens": 64, "chunk_overlap": 32})
    assert created.status_code == 201


def test_serve_restarts_a_dead_worker_thread_and_readyz_reports_it(services, client):
    from ingestion.supervision import WorkerThreads

    deaths = []

    def make_worker():
        def die_once(_phase, job_id):
            if not deaths:
                deaths.append(job_id)
                raise SystemExit("a worker thread dies")  # escapes the loop, as no job error does

        return Worker(services.database, services.ingestion, poll_seconds=0.02, lease_seconds=1,
                      checkpoint=die_once)

    threads = WorkerThreads(make_worker, 1, check_every_s=3600)  # revived by hand below
    services.ingest_workers = threads
    threads.start()
    try:
        job_id = upload(client, {"id": "a", "text": "Volcanoes erupt."})
        deadline = time.monotonic() + 30
        while threads.state()["alive"] and time.monotonic() < deadline:
            time.sleep(0.05)
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.get_json()["ingest_workers"] == {"configured": 1, "alive": 0, "restarts": 0}
        threads.revive_dead()
        while client.get(f"/v1/jobs/{job_id}").get_json()["status"] != "indexed" and time.monotonic() < deadline:
            time.sleep(0.1)
        up = client.get("/readyz")
        assert up.status_code == 200
        assert up.get_json()["ingest_workers"] == {"configured": 1, "alive": 1, "restarts": 1}
        assert client.get(f"/v1/jobs/{job_id}").get_json()["attempts"] == 2  # taken over after the lease
    finally:
        threads.stop(timeout=10)
    with services.database.session() as session:
        assert store.find_collection(session, "docs") is not None
        assert get_job(session, job_id).status == "indexed"


def test_an_unreadable_stored_upload_fails_at_once(services, worker):
    with services.database.session() as session:
        target = services.ingestion.ensure_collection(session, "docs")
        create_job(session, target, kind="documents", payload=b"[{not json")
    job = worker.run_once()
    assert (job.status, job.error_code, job.attempts) == ("failed", "invalid_payload", 1)


def test_a_key_of_a_deleted_collection_still_reads_its_cancelled_job(migrated_url, app_factory):
    from search_service.store import keys as key_store

    app = app_factory(migrated_url, auth="on")
    services = app.extensions["search_service"]
    with services.database.session() as session:
        writer = key_store.create_key(session, name="w", role="write", collections="docs")[1]
        admin = key_store.create_key(session, name="a", role="admin", collections="*")[1]
    client = app.test_client()
    as_writer, as_admin = {"Authorization": f"Bearer {writer}"}, {"Authorization": f"Bearer {admin}"}
    job_id = upload(client, {"id": "a", "text": "Queued, then its collection goes."}, headers=as_writer)
    assert client.delete("/v1/collections/docs", headers=as_admin).status_code == 204
    shown = client.get(f"/v1/jobs/{job_id}", headers=as_writer)
    assert shown.status_code == 200 and shown.get_json()["status"] == "cancelled"
    assert shown.get_json()["error_code"] == "collection_deleted"
