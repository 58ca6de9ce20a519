"""`search-service worker` stops on SIGTERM or SIGINT after the job in hand, and exits 0.

A real worker process over the test database: three jobs are queued, the signal arrives while the
first one runs, and that job must end indexed while the other two stay pending for the next
worker. SIGINT is also tested with SIGINT ignored at start, as a shell's background job inherits it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from sqlalchemy import select

from scripts.crash_test import BIN, queue_jobs, wait_for_start
from search_service.services import build_services
from search_service.settings import Settings
from search_service.store.models import Job


def worker_env(url: str, data_dir, embedder: str) -> dict:
    return {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_DATABASE_URL": url,
        "RAG_EMBEDDER_MODEL": embedder,
        "RAG_RERANKER_MODEL": "none",
        "RAG_DEVICE": "cpu",
        "RAG_LOG_FORMAT": "text",
        "RAG_WORKER_POLL_SECONDS": "0.05",
        "RAG_EMBED_BATCH_SIZE": "2",  # a job of 8 documents takes a few seconds
    }


SIGTERM_ON_EVERY_DATABASE = [
    pytest.param(signal.SIGTERM, "sqlite"),
    pytest.param(signal.SIGTERM, "postgres", marks=pytest.mark.postgres),
    pytest.param(signal.SIGINT, "sqlite"),  # the signal handling does not depend on the database
]


@pytest.mark.parametrize(
    ("sig", "database_url"), SIGTERM_ON_EVERY_DATABASE, indirect=["database_url"]
)
def test_a_signal_finishes_the_running_job_then_exits_0(migrated_url, tmp_path, minilm_path, sig):
    settings = Settings(
        data_dir=tmp_path,
        database_url=migrated_url,
        embedder_model=minilm_path,
        reranker_model=None,
    )
    services = build_services(settings)
    try:
        job_ids = queue_jobs(services.database, services.ingestion, 0, jobs=3, docs_per_job=8)
        code, output = run_and_signal(migrated_url, tmp_path, minilm_path, job_ids[0], sig)
        with services.database.session() as session:
            states = dict(session.execute(select(Job.id, Job.status)).all())
    finally:
        services.close()
    assert code == 0, output[-3000:]
    assert "worker stopped on request after 1 job(s)" in output
    assert [states[job_id] for job_id in job_ids] == ["indexed", "pending", "pending"], output[
        -3000:
    ]


def run_and_signal(url: str, tmp_path, embedder: str, first_job: str, sig) -> tuple[int, str]:
    """Start a worker (SIGINT ignored, as in a background job), signal it once `first_job` runs."""
    log_path = tmp_path / "worker.log"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child inherits "ignored"
    try:
        with open(log_path, "w") as log:
            worker = subprocess.Popen(
                [str(BIN), "worker"],
                env=worker_env(url, tmp_path, embedder),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_for_start(log_path, worker, 1)
        deadline = time.monotonic() + 120
        while f"job {first_job}" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.send_signal(sig)
        code = worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    return code, log_path.read_text()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_second_signal_stops_at_once(migrated_url, tmp_path, minilm_path):
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [str(BIN), "worker"],
            env={
                **worker_env(migrated_url, tmp_path, minilm_path),
                "RAG_WORKER_POLL_SECONDS": "30",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_start(log_path, worker, 1)
        time.sleep(0.5)  # inside the 30 s poll wait: the first signal alone would take that long
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code == 130, log_path.read_text()[-3000:]
