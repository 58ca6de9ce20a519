"""The ingestion worker: claims pending jobs and runs them through the pipeline."""

from __future__ import annotations

import json
import logging
import threading

from ingestion.pipeline import IngestionPipeline, IngestResult, SourceDocument
from search_service.store import jobs as job_store
from search_service.store.db import Database
from search_service.store.models import Job

log = logging.getLogger(__name__)


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
    def __init__(self, database: Database, pipeline: IngestionPipeline, poll_seconds: float = 1.0):
        self.database = database
        self.pipeline = pipeline
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()

    def run_once(self) -> Job | None:
        """Claim and run one job; return it (None when the queue is empty)."""
        with self.database.session() as session:
            job = job_store.claim_next_job(session)
            if job is None:
                return None
            job_id, collection_name = job.id, job.collection.name
            documents = job_documents(job)
        log.info("job %s: %d document(s) for %s", job_id, len(documents), collection_name)
        try:
            self.pipeline.ingest(
                collection_name,
                documents,
                on_stage=lambda stage: self._set_status(job_id, stage),
                finalize=lambda session, results: self._finish(session, job_id, results),
            )
        except Exception as exc:  # noqa: BLE001 - a job that breaks must end failed, with a reason
            log.exception("job %s failed", job_id)
            self._set_status(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        with self.database.session() as session:
            return job_store.get_job(session, job_id)

    def run(self, *, max_jobs: int | None = None) -> int:
        """Process jobs until stopped (or `max_jobs` done); sleeps while the queue is empty."""
        done = 0
        while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
            if self.run_once() is None:
                self.stopping.wait(self.poll_seconds)
            else:
                done += 1
        return done

    def _set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        with self.database.session() as session:
            job_store.set_job_status(session, job_store.get_job(session, job_id), status, error=error)

    @staticmethod
    def _finish(session, job_id: str, results: list[IngestResult]) -> None:
        job = job_store.get_job(session, job_id)
        failed = [r for r in results if r.status == "failed"]
        summary = {
            "documents": [
                {"document_id": r.external_id, "status": r.status, "chunks": r.chunks, "error": r.error}
                for r in results
            ]
        }
        if failed and len(failed) == len(results):
            error = "; ".join(f"{r.external_id}: {r.error}" for r in failed)
            job_store.set_job_status(session, job, "failed", error=error, result=summary)
        else:
            job_store.set_job_status(session, job, "indexed", result=summary)
