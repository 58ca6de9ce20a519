"""Job claiming, leases, retries and concurrent workers, on SQLite and PostgreSQL."""

import threading
from datetime import timedelta

import pytest

from ingestion.worker import Worker
from search_service.store import jobs as job_store
from search_service.store.models import Job, utcnow


@pytest.fixture
def services(migrated_url, make_services):
    return make_services(migrated_url)


def queue(services, n=1, collection="docs"):
    import json

    ids = []
    with services.database.session() as session:
        target = services.ingestion.ensure_collection(session, collection)
        for i in range(n):
            payload = json.dumps([{"id": f"doc-{i}", "text": f"Document {i} talks about subject {i}."}]).encode()
            ids.append(job_store.create_job(session, target, kind="documents", payload=payload).id)
    return ids


def expire_lease(services, job_id):
    with services.database.session() as session:
        job = session.get(Job, job_id)
        job.lease_expires_at = utcnow() - timedelta(seconds=1)


def test_a_job_whose_worker_died_is_claimed_again(services):
    [job_id] = queue(services)
    with services.database.session() as session:
        claimed = job_store.claim_next_job(session, "dead-worker", lease_seconds=60)
        assert claimed.id == job_id and claimed.attempts == 1
        assert job_store.claim_next_job(session, "other", lease_seconds=60) is None  # lease still held
    expire_lease(services, job_id)
    job = Worker(services.database, services.ingestion, worker_id="rescuer").run_once()
    assert job.status == "indexed" and job.attempts == 2 and job.worker_id == "rescuer"


def test_a_job_that_kills_its_worker_every_time_ends_failed(services):
    [job_id] = queue(services)
    for attempt in range(3):
        with services.database.session() as session:
            assert job_store.claim_next_job(session, f"w{attempt}", max_attempts=3).id == job_id
        expire_lease(services, job_id)
    with services.database.session() as session:
        assert job_store.claim_next_job(session, "w3", max_attempts=3) is None
        job = job_store.get_job(session, job_id)
        assert job.status == "failed" and "3 attempts" in job.error and job.error_code == "worker_lost"


def test_a_transient_error_is_retried_then_fails(services, monkeypatch):
    [_job_id] = queue(services)
    calls = []

    def broken_embed(texts, **kwargs):
        calls.append(len(texts))
        raise OSError(28, "No space left on device")

    worker = Worker(services.database, services.ingestion, max_attempts=2, retry_backoff_seconds=0)
    monkeypatch.setattr(services.ingestion.embedder, "embed", broken_embed)
    first = worker.run_once()
    assert first.status == "pending" and first.error_code == "system_error"
    assert "No space left" not in first.error  # the details go to the worker's log only
    second = worker.run_once()
    assert second.status == "failed" and second.attempts == 2 and second.error_code == "system_error"
    assert len(calls) == 2


def test_a_worker_that_lost_its_lease_discards_its_work(services):
    [job_id] = queue(services)
    worker = Worker(services.database, services.ingestion, worker_id="slow")

    def steal(stage):
        with services.database.session() as session:
            session.get(Job, job_id).worker_id = "thief"

    original = services.ingestion.ingest
    result = {}

    def ingest(*args, **kwargs):
        kwargs["on_stage"] = steal
        result["value"] = original(*args, **kwargs)

    services.ingestion.ingest = ingest
    try:
        worker.run_once()
    finally:
        services.ingestion.ingest = original
    with services.database.session() as session:
        job = job_store.get_job(session, job_id)
        assert job.status == "parsing" and job.worker_id == "thief"  # untouched by the loser
        assert session.query(Job).count() == 1


def test_concurrent_workers_never_claim_the_same_job(services):
    job_ids = set(queue(services, n=12))
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(name):
        while True:
            with services.database.session() as session:
                job = job_store.claim_next_job(session, name)
            if job is None:
                return
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(job_ids)  # every job exactly once


class StatusRecordingWorker(Worker):
    """Reads the job's status back from the database around every change the worker makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []

    def _set_status(self, job_id, status):
        if not self.seen:  # what claiming left in the database
            self.seen.append(self._read(job_id))
        super()._set_status(job_id, status)
        self.seen.append(self._read(job_id))

    def _read(self, job_id):
        with self.database.session() as session:
            return job_store.get_job(session, job_id).status


def test_a_job_goes_through_every_status_in_order(services):
    [job_id] = queue(services)
    with services.database.session() as session:
        assert job_store.get_job(session, job_id).status == "pending"
    worker = StatusRecordingWorker(services.database, services.ingestion, worker_id="w")
    job = worker.run_once()
    assert worker.seen == ["parsing", "embedding"]  # then the same transaction as the chunks: indexed
    assert job.status == "indexed" and job.error is None
