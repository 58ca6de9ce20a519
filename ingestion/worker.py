"""The ingestion worker: claims jobs under a lease, keeps the lease alive, runs the pipeline.

The loop survives any single job: an error in a job ends that job in a final state that tells
the truth (`failed` with a slug, `cancelled` when its collection was deleted) or hands it back for
a retry after a back-off (`ingestion.job_errors`), and an error outside a job (the database
restarting) is logged and retried. A job this worker no longer holds is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import contextmanager

from ingestion.job_errors import CollectionGoneError, classify
from ingestion.pipeline import IngestionPipeline, IngestResult, SourceDocument
from search_service.errors import InvalidRequestError
from search_service.store import jobs as job_store
from search_service.store.db import Database
from search_service.store.models import Job

log = logging.getLogger(__name__)

MAX_LOOP_BACKOFF_S = 30.0
MAX_RETRY_BACKOFF_S = 300.0
# What a job's `documents` report calls the pipeline's per-document outcomes.
REPORT_KEYS = {"added": "created", "updated": "replaced", "unchanged": "unchanged"}


class LostLeaseError(RuntimeError):
    """This worker no longer holds the job (taken over, or cancelled); its work is discarded."""


def job_documents(job: Job) -> list[SourceDocument]:
    """The documents a job uploads; an unreadable payload is a permanent `invalid_payload`."""
    try:
        return _job_documents(job)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidRequestError("the job's stored upload cannot be read; upload it again",
                                  code="invalid_payload") from None


def _job_documents(job: Job) -> list[SourceDocument]:
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
            format=item.get("format") or "text",
        )
        for item in items
    ]


def documents_report(results: list[IngestResult]) -> dict:
    """`{created, replaced, unchanged: [ids], failed: [{id, code, message}]}`."""
    report: dict = {"created": [], "replaced": [], "unchanged": [], "failed": []}
    for result in results:
        if result.status == "failed":
            report["failed"].append({"id": result.external_id, "code": result.error_code or "failed",
                                     "message": result.error or ""})
        else:
            report[REPORT_KEYS[result.status]].append(result.external_id)
    return report


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
        retry_backoff_seconds: float = 1.0,
        checkpoint: Callable[[str, str], None] | None = None,
    ):
        self.database = database
        self.pipeline = pipeline
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Called as checkpoint(phase, job_id) at "parsing", "embedding", "storing" (before the
        # final transaction) and "committed" (after it): fault-injection tests hook in here.
        self.checkpoint = checkpoint or (lambda _phase, _job_id: None)
        self.stopping = threading.Event()
        # Set by a signal handler, which must not take the Event's lock (the interrupted code may
        # hold it): `run` checks it between jobs and at least once per poll.
        self.stop_requested = False

    def run_once(self) -> Job | None:
        """Claim and run one job; return it as it ended (None when nothing is claimable).

        Raises only for errors outside a job (claiming, reading back: the database is down)."""
        with self.database.session() as session:
            job = job_store.claim_next_job(
                session, self.worker_id, lease_seconds=self.lease_seconds, max_attempts=self.max_attempts
            )
        if job is None:
            return None
        log.info("job %s (attempt %d, request %s): %s for %s", job.id, job.attempts, job.request_id,
                 job.kind, job.collection_name, extra=self._context(job))
        with self._heartbeat(job.id):
            try:
                self._process(job)
            except LostLeaseError:
                log.warning("job %s is no longer held by this worker (taken over or cancelled); "
                            "its work is discarded", job.id, extra=self._context(job))
            except Exception as exc:  # noqa: BLE001 - a job's error must never end the worker
                self._record_failure(job, exc)
        with self.database.session() as session:
            return session.get(Job, job.id)

    def run(self, *, max_jobs: int | None = None) -> int:
        """Process jobs until stopped (or `max_jobs` done); sleeps while the queue is empty and
        backs off (up to 30 s) while the database cannot be reached."""
        done, failures = 0, 0
        while not self._should_stop() and (max_jobs is None or done < max_jobs):
            try:
                job = self.run_once()
            except Exception:  # the database restarting must not end the worker
                failures += 1
                delay = min(MAX_LOOP_BACKOFF_S, self.poll_seconds * 2 ** min(failures, 8))
                log.warning("worker loop error (database unreachable?); retrying in %.1f s", delay,
                            exc_info=True)
                self.stopping.wait(delay)
                continue
            failures = 0
            if job is None:
                self.stopping.wait(self.poll_seconds)
            else:
                done += 1
        if self.stop_requested:
            log.info("worker stopped on request after %d job(s)", done)
        return done

    def _should_stop(self) -> bool:
        return self.stop_requested or self.stopping.is_set()

    def _process(self, job: Job) -> None:
        if job.collection_id is None or job.collection_name is None:
            raise CollectionGoneError(f"the collection of job {job.id} was deleted")
        documents = job_documents(job)

        def on_stage(stage: str) -> None:
            self.checkpoint(stage, job.id)
            if stage == "embedding":
                self._set_status(job.id, stage)

        self.pipeline.ingest(
            job.collection_name,
            documents,
            collection_id=job.collection_id,
            on_stage=on_stage,
            finalize=lambda session, results: self._finish(session, job.id, results),
            writes_around=lambda session: job_store.writes_around(session, job.id),
        )

    def _record_failure(self, job: Job, exc: Exception) -> None:
        """End the job as `classify` says, or hand it back for a retry; the details go to the log."""
        error = classify(exc)
        context = self._context(job, code=error.code)
        retry = error.outcome == "retry" and job.attempts < self.max_attempts
        if retry:
            delay = min(MAX_RETRY_BACKOFF_S, self.retry_backoff_seconds * 2 ** (job.attempts - 1))
            log.warning("job %s attempt %d failed (%s); retrying in %.1f s", job.id, job.attempts,
                        error.code, delay, exc_info=exc, extra=context)
        else:
            log.error("job %s %s: %s", job.id, "cancelled" if error.outcome == "cancelled" else "failed",
                      error.code, exc_info=exc, extra=context)
        try:
            with self.database.session() as session:
                if retry:
                    held = job_store.retry_job(session, job.id, self.worker_id, error.code, error.message, delay)
                else:
                    status = "cancelled" if error.outcome == "cancelled" else "failed"
                    message = error.message
                    if error.outcome == "retry":
                        message = f"{message.split(';')[0]} on each of {job.attempts} attempts"
                    held = job_store.end_job(session, job.id, self.worker_id, status, error.code, message)
            if not held:
                log.info("job %s had already ended or moved on; left as it is", job.id, extra=context)
        except Exception:  # its lease runs out and the job is tried again
            log.warning("could not record the outcome of job %s; it is retried once its lease "
                        "expires", job.id, exc_info=True, extra=context)

    @staticmethod
    def _context(job: Job, **more) -> dict:
        return {"job_id": job.id, "request_id": job.request_id, **more}

    @contextmanager
    def _heartbeat(self, job_id: str):
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_seconds / 3):
                try:
                    with self.database.session() as session:
                        if not job_store.renew_lease(session, job_id, self.worker_id, self.lease_seconds):
                            return
                except Exception:  # try again at the next beat
                    log.warning("heartbeat for job %s failed", job_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _set_status(self, job_id: str, status: str) -> None:
        with self.database.session() as session:
            if not job_store.advance_job(session, job_id, self.worker_id, status):
                raise LostLeaseError(job_id)

    def _finish(self, session, job_id: str, results: list[IngestResult]) -> None:
        """Runs inside the transaction that stores the chunks: job state and chunks commit together."""
        if not job_store.owns_job(session, job_id, self.worker_id):
            raise LostLeaseError(job_id)
        job = job_store.get_job(session, job_id)
        report = documents_report(results)
        result = {
            "documents": [{"document_id": r.external_id, "status": r.status, "chunks": r.chunks,
                           "error": r.error} for r in results],
            "report": report,
        }
        failed = report["failed"]
        if not failed:
            job_store.set_job_status(session, job, "indexed", result=result)
            return
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        error = f"{first['code']}: {first['id']}: {first['message']}{more}"
        status = "failed" if len(failed) == len(results) else "indexed_with_errors"
        job_store.set_job_status(session, job, status, error=error, error_code=first["code"], result=result)
        log.error("job %s %s: %s", job_id, status, first["code"],
                  extra={"job_id": job_id, "request_id": job.request_id, "code": first["code"]})
