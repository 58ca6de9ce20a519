"""Faults that take a process away: a worker SIGKILLed in every job phase (real processes, on
SQLite and PostgreSQL), and the database restarting in every phase (a private PostgreSQL that
the test stops and starts; never the shared server other tests use).

After each, a worker (the replacement, or the same one) is alive, every job ends `indexed`, and
the database, a freshly loaded FAISS index and the API agree (tests/support/faults.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError

from ingestion.worker import Worker
from search_service.store.db import migrate
from search_service.store.models import FINAL_JOB_STATES
from tests.support.faults import A2, PHASES, B, assert_agreement, job_state, seed_and_queue

REPO = Path(__file__).resolve().parents[2]


def wait_until_final(services, job_ids, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(job_state(services, j)["status"] in FINAL_JOB_STATES for j in job_ids):
                return
        except SQLAlchemyError:  # the database is restarting
            pass
        time.sleep(0.2)
    raise AssertionError(f"jobs not final: {[job_state(services, j) for j in job_ids]}")


def drain(services, job_ids, **worker_options) -> Worker:
    """Run a worker in a thread until every job is final; it must still be alive then."""
    worker = Worker(services.database, services.ingestion, poll_seconds=0.05, lease_seconds=2,
                    max_attempts=5, retry_backoff_seconds=0.2, **worker_options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until_final(services, job_ids)
        assert thread.is_alive(), "the worker loop ended"
    finally:
        worker.stopping.set()
        thread.join(timeout=30)
    return worker


def assert_every_job_indexed(app, jobs: dict[str, str], prefix: str) -> None:
    services = app.extensions["search_service"]
    for phase, job_id in jobs.items():
        state = job_state(services, job_id)
        assert state["status"] == "indexed", (phase, state)
        assert state["documents"]["created"] == ["b"] and state["documents"]["replaced"] == ["a"]
        assert_agreement(services, app.test_client(), f"{prefix}-{phase}", {"a": A2, "b": B})


def test_a_worker_sigkilled_in_any_phase_is_replaced_and_nothing_is_lost(migrated_url, app_factory, minilm_path):
    app = app_factory(migrated_url)
    services = app.extensions["search_service"]
    jobs = {phase: seed_and_queue(services, f"k-{phase}") for phase in PHASES}
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAG_DATA_DIR": str(services.settings.data_dir),
           "RAG_DATABASE_URL": migrated_url, "RAG_EMBEDDER_MODEL": minilm_path,
           "RAG_RERANKER_MODEL": "none", "RAG_DEVICE": "cpu", "RAG_WORKER_POLL_SECONDS": "0.05",
           "RAG_JOB_LEASE_SECONDS": "2", "RAG_JOB_MAX_ATTEMPTS": "5", "RAG_LOG_FORMAT": "text"}
    killed = subprocess.run([sys.executable, "-m", "tests.support.fault_worker", *PHASES], check=False,
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = killed.stdout + killed.stderr
    assert killed.returncode == 0, output[-4000:]  # each child died by SIGKILL at its phase
    assert [line.split()[0] for line in killed.stdout.splitlines()[1:]] == list(PHASES), output[-4000:]
    drain(services, jobs.values())  # the replacement takes the abandoned jobs once leases expire
    attempts = {phase: job_state(services, job_id)["attempts"] for phase, job_id in jobs.items()}
    assert attempts["committed"] == 1 and all(attempts[p] >= 2 for p in PHASES[:3]), attempts
    assert_every_job_indexed(app, jobs, "k")


@pytest.fixture(scope="module")
def private_postgres():
    from tests.support.private_postgres import PrivatePostgres

    with PrivatePostgres.started() as server:
        yield server


@pytest.mark.postgres
def test_a_database_restart_in_any_phase_is_survived(private_postgres, app_factory):
    url = private_postgres.create_database()
    migrate(url)
    app = app_factory(url)
    services = app.extensions["search_service"]
    jobs = {phase: seed_and_queue(services, f"r-{phase}") for phase in PHASES}
    phase_of = {job_id: phase for phase, job_id in jobs.items()}
    restarts = []

    def restart(reached, job_id):
        if phase_of.get(job_id) == reached:
            del phase_of[job_id]
            restarts.append(private_postgres.restart_after(1.0))

    drain(services, jobs.values(), checkpoint=restart)
    for timer in restarts:
        timer.join()
    assert len(restarts) == len(PHASES)
    attempts = {phase: job_state(services, job_id)["attempts"] for phase, job_id in jobs.items()}
    # Before the commit the restart broke the attempt (retried); after it, nothing was lost.
    assert attempts["committed"] == 1 and all(attempts[p] >= 2 for p in PHASES[:3]), attempts
    assert_every_job_indexed(app, jobs, "r")
