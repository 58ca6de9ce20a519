"""The ingestion worker: claims jobs under a lease, keeps the lease alive, runs the pipeline."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from contextlib import contextmanager

from ingestion.parsers import ParseError
from ingestion.pipeline import IngestionPipeline, IngestResult, SourceDocument
from search_service.store import jobs as job_store
from search_service.store.db import Database
from search_service.store.models import Job

log = logging.getLogger(__name__)


class LostLeaseError(RuntimeError):
    """Another worker took the job over (this one was presumed dead); its work is discarded."""


def job_documents(job: Job) -> list[SourceDocument]:
    if job.kind == "file":
        return [
            SourceDocument(
                external_id=job.external_id or job.filename or job.id,
                data=job.payload or b"",
                filename=job.filename,
                content_type=job.content_type,
                source=job.filename,
                metadata=job.meta or {},
            )
        ]
    items = json.loads((job.payload or b"[]").decode("utf-8"))
    return [
        SourceDocument(
            external_id=str(item["id"]),
            text=item["text"],
            source=item.get("source") or str(item["id"]),
            metadata=item.get("metadata") or {},
        )
        for item in items
    ]


class Worker:
    def __init__(
        self,
        database: Database,
        pipeline: IngestionPipeline,
        poll_seconds: float = 1.0,
        *,
        lease_seconds: float = 60.0,
        max_attempts: int = 3,
        worker_id: str | None = None,
    ):
        self.database = database
        self.pipeline = pipeline
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        # Set by a signal handler, which must not take the Event's lock (the interrupted code may
        # hold it): `run` checks it between jobs and at least once per poll.
        self.stop_requested = False

    def run_once(self) -> Job | None:
        """Claim and run one job; return it as it ended (None when nothing is claimable)."""
        with self.database.session() as session:
            job = job_store.claim_next_job(
                session, self.worker_id, lease_seconds=self.lease_seconds, max_attempts=self.max_attempts
            )
            if job is None:
                return None
            job_id, attempts, collection_name = job.id, job.attempts, job.collection.name
            documents = job_documents(job)
        log.info("job %s (attempt %d): %d document(s) for %s", job_id, attempts, len(documents), collection_name)
        with self._heartbeat(job_id):
            try:
                self.pipeline.ingest(
                    collection_name,
                    documents,
                    on_stage=lambda stage: self._set_status(job_id, stage),
                    finalize=lambda session, results: self._finish(session, job_id, results),
                )
            except LostLeaseError:
                log.warning("job %s was taken over by another worker; discarding this attempt", job_id)
            except ParseError as exc:  # the document itself is bad: retrying cannot help
                self._set_status(job_id, "failed", error=f"{exc.code}: {exc}")
            except Exception as exc:
                log.exception("job %s failed on attempt %d", job_id, attempts)
                retry = attempts < self.max_attempts
                self._set_status(job_id, "pending" if retry else "failed", error=f"{type(exc).__name__}: {exc}")
        with self.database.session() as session:
            return job_store.get_job(session, job_id)

    def run(self, *, max_jobs: int | None = None) -> int:
        """Process jobs until stopped (or `max_jobs` done); sleeps while the queue is empty."""
        done = 0
        while not self._should_stop() and (max_jobs is None or done < max_jobs):
            if self.run_once() is None:
                self.stopping.wait(self.poll_seconds)
            else:
                done += 1
        if self.stop_requested:
            log.info("worker stopped on request after %d job(s)", done)
        return done

    def _should_stop(self) -> bool:
        return self.stop_requested or self.stopping.is_set()

    @contextmanager
    def _heartbeat(self, job_id: str):
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_seconds / 3):
                try:
                    with self.database.session() as session:
                        if not job_store.renew_lease(session, job_id, self.worker_id, self.lease_seconds):
                            return
                except Exception:
                    log.warning("heartbeat for job %s failed", job_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        with self.database.session() as session:
            if not job_store.owns_job(session, job_id, self.worker_id):
                raise LostLeaseError(job_id)
            job = job_store.get_job(session, job_id)
            job_store.set_job_status(session, job, status, error=error)
            if status == "pending":
                job.lease_expires_at = None
                job.worker_id = None

    def _finish(self, session, job_id: str, results: list[IngestResult]) -> None:
        """Runs inside the transaction that stores the chunks: job state and chunks commit together."""
        if not job_store.owns_job(session, job_id, self.worker_id):
            raise LostLeaseError(job_id)
        job = job_store.get_job(session, job_id)
        failed = [r for r in results if r.status == "failed"]
        summary = {
            "documents": [
                {"document_id": r.external_id, "status": r.status, "chunks": r.chunks, "error": r.error}
                for r in results
            ]
        }
        if failed and len(failed) == len(results):
            error = "; ".join(f"{r.external_id}: {r.error_code}: {r.error}" for r in failed)
            job_store.set_job_status(session, job, "failed", error=error, result=summary)
        else:
            job_store.set_job_status(session, job, "indexed", result=summary)
