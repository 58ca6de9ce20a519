"""Fault injection in every job phase, on SQLite and PostgreSQL (tests/support/faults.py).

Deleting the collection, deleting or replacing the document while a job runs: the worker goes
on to its next job, the job ends in a final state that tells the truth, and nothing deleted comes
back. SIGKILLed worker processes and a database restart are in test_fault_processes.py.
"""

from __future__ import annotations

import json

import pytest

from ingestion.pipeline import SourceDocument
from ingestion.worker import Worker
from search_service.store import collections as store
from search_service.store.jobs import create_job
from tests.support.faults import (
    A2,
    A3,
    BEFORE_COMMIT,
    PHASES,
    B,
    assert_agreement,
    job_state,
    seed_and_queue,
)


@pytest.fixture
def app(migrated_url, app_factory):
    return app_factory(migrated_url)


def delete_collection(app, collection):
    assert app.test_client().delete(f"/v1/collections/{collection}").status_code == 204


def delete_document(app, collection):
    assert app.test_client().delete(f"/v1/collections/{collection}/documents/a").status_code == 204


def replace_document(app, collection):
    services = app.extensions["search_service"]
    [result] = services.ingestion.ingest(collection, [SourceDocument(external_id="a", text=A3)])
    assert result.status == "updated"


def run_scenarios(app, fault) -> dict[str, tuple[str, dict]]:
    """One collection per phase; `fault` strikes its job at that phase. Then a job in another
    collection proves the same worker goes on. Returns {phase: (job id, final state)}."""
    services = app.extensions["search_service"]
    jobs = {phase: seed_and_queue(services, f"c-{phase}") for phase in PHASES}
    phase_of = {job_id: phase for phase, job_id in jobs.items()}

    def strike(reached, job_id):
        if phase_of.get(job_id) == reached:
            fault(app, f"c-{reached}")

    worker = Worker(services.database, services.ingestion, poll_seconds=0.01, lease_seconds=2,
                    retry_backoff_seconds=0.1, checkpoint=strike)
    with services.database.session() as session:
        other = services.ingestion.ensure_collection(session, "other")
        payload = json.dumps([{"id": "after", "text": B}]).encode()
        after = create_job(session, other, kind="documents", payload=payload).id
    assert worker.run(max_jobs=len(PHASES) + 1) == len(PHASES) + 1  # no exception, every job done
    assert job_state(services, after)["status"] == "indexed"
    return {phase: (job_id, job_state(services, job_id)) for phase, job_id in jobs.items()}


def test_deleting_the_collection_in_any_phase_cancels_the_job(app):
    client = app.test_client()
    for phase, (job_id, state) in run_scenarios(app, delete_collection).items():
        if phase in BEFORE_COMMIT:
            assert (state["status"], state["error_code"]) == ("cancelled", "collection_deleted"), phase
        else:  # it had committed: the job did index, and the deletion then removed everything
            assert state["status"] == "indexed", phase
        shown = client.get(f"/v1/jobs/{job_id}").get_json()
        assert shown["status"] == state["status"] and shown["collection"] == f"c-{phase}"
        assert_agreement(app.extensions["search_service"], client, f"c-{phase}", None)


def test_deleting_the_document_in_any_phase_never_brings_it_back(app):
    client = app.test_client()
    for phase, (_job_id, state) in run_scenarios(app, delete_document).items():
        report = state["documents"]
        if phase in BEFORE_COMMIT:
            assert state["status"] == "indexed_with_errors", phase
            assert report["created"] == ["b"] and [f["id"] for f in report["failed"]] == ["a"]
            assert report["failed"][0]["code"] == "document_changed"
        else:
            assert state["status"] == "indexed" and report["replaced"] == ["a"], phase
        assert_agreement(app.extensions["search_service"], client, f"c-{phase}", {"b": B})


def test_replacing_the_document_in_any_phase_is_never_overwritten_by_the_older_job(app):
    client = app.test_client()
    for phase, (_job_id, state) in run_scenarios(app, replace_document).items():
        report = state["documents"]
        if phase in BEFORE_COMMIT:
            assert state["status"] == "indexed_with_errors", phase
            assert report["failed"][0]["id"] == "a" and report["created"] == ["b"]
        else:  # the job's version was stored first; the later replacement won after it
            assert state["status"] == "indexed" and report["replaced"] == ["a"], phase
        assert_agreement(app.extensions["search_service"], client, f"c-{phase}", {"a": A3, "b": B})


def test_a_job_that_reads_its_collection_gone_before_it_starts_is_cancelled(app):
    services = app.extensions["search_service"]
    job_id = seed_and_queue(services, "gone")
    delete_collection(app, "gone")
    state = job_state(services, job_id)
    assert (state["status"], state["error_code"]) == ("cancelled", "collection_deleted")
    assert Worker(services.database, services.ingestion).run_once() is None  # nothing to claim
    with services.database.session() as session:
        assert store.find_collection(session, "gone") is None  # never re-created by the worker


def test_an_untouched_job_replaces_and_creates(app):
    services = app.extensions["search_service"]
    job_id = seed_and_queue(services, "calm")
    Worker(services.database, services.ingestion).run_once()
    state = job_state(services, job_id)
    assert state["status"] == "indexed" and state["error"] is None
    assert state["documents"] == {"created": ["b"], "replaced": ["a"], "unchanged": [], "failed": []}
    assert_agreement(services, app.test_client(), "calm", {"a": A2, "b": B})
