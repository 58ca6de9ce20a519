"""Several workers run one collection's jobs out of order; the upload queued last still wins, on
SQLite and PostgreSQL. Found by scripts/replicas.py (2 workers): an older job that stored first
made the newer one fail `document_changed` (the client's latest text lost), and an older job
retried after its worker died overwrote a newer upload that another worker had stored meanwhile."""

from __future__ import annotations

import json

import pytest

from ingestion.worker import Worker
from search_service.store import collections as store
from search_service.store import jobs as job_store
from tests.ingestion.test_jobs import expire_lease

OLDER, NEWER = "The older upload speaks of amber lanterns.", "The newer upload speaks of cobalt harbors."


@pytest.fixture
def services(migrated_url, make_services):
    return make_services(migrated_url)


def queue_text(services, text: str) -> str:
    with services.database.session() as session:
        target = services.ingestion.ensure_collection(session, "docs")
        payload = json.dumps([{"id": "x", "text": text}]).encode()
        return job_store.create_job(session, target, kind="documents", payload=payload).id


def stored_text(services) -> str:
    with services.database.session() as session:
        document = store.find_document(session, store.get_collection(session, "docs"), "x")
        return " ".join(chunk.text for chunk in document.chunks)


def outcome(services, job_id: str) -> tuple[str, dict]:
    with services.database.session() as session:
        job = job_store.get_job(session, job_id)
        return job.status, job.result["report"]


def worker(services, name: str, **options) -> Worker:
    return Worker(services.database, services.ingestion, poll_seconds=0.01, worker_id=name, **options)


def claim_older_and_stall(services, older: str) -> None:
    """A worker claims the older job (the oldest goes first) and stalls or dies."""
    with services.database.session() as session:
        assert job_store.claim_next_job(session, "stalled").id == older


def test_an_older_job_retried_after_a_newer_one_stored_never_overwrites_it(services):
    older, newer = queue_text(services, OLDER), queue_text(services, NEWER)
    claim_older_and_stall(services, older)
    assert worker(services, "second").run_once().id == newer  # the other worker takes the newer
    expire_lease(services, older)  # the first worker died; its job is claimed again
    assert worker(services, "rescuer").run_once().id == older
    status, report = outcome(services, older)
    assert status == "failed" and [f["code"] for f in report["failed"]] == ["document_changed"]
    assert outcome(services, newer) == ("indexed", {"created": ["x"], "replaced": [], "unchanged": [], "failed": []})
    assert stored_text(services) == NEWER


def test_a_newer_job_replaces_what_an_older_one_stored_while_it_ran(services):
    older, newer = queue_text(services, OLDER), queue_text(services, NEWER)
    claim_older_and_stall(services, older)

    def older_finishes_meanwhile(phase: str, job_id: str) -> None:
        if phase == "embedding" and job_id == newer:
            expire_lease(services, older)
            assert worker(services, "first").run_once().id == older

    assert worker(services, "second", checkpoint=older_finishes_meanwhile).run_once().id == newer
    assert outcome(services, older)[0] == "indexed"
    status, report = outcome(services, newer)
    assert status == "indexed" and report["replaced"] == ["x"], report
    assert stored_text(services) == NEWER
