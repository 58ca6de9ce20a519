"""Ingestion jobs: created by the API, claimed and advanced by workers."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from search_service.errors import NotFoundError
from search_service.store.models import Collection, Job, utcnow


def create_job(
    session: Session,
    collection: Collection,
    *,
    kind: str,
    payload: bytes,
    filename: str | None = None,
    content_type: str | None = None,
    external_id: str | None = None,
    metadata: dict | None = None,
) -> Job:
    job = Job(
        id=str(uuid.uuid4()),
        collection_id=collection.id,
        status="pending",
        kind=kind,
        payload=payload,
        filename=filename,
        content_type=content_type,
        external_id=external_id,
        meta=metadata or {},
        attempts=0,
        result={},
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise NotFoundError(f"job {job_id!r} does not exist", code="job_not_found") from None
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id!r} does not exist", code="job_not_found")
    return job


def claim_next_job(session: Session) -> Job | None:
    """Move the oldest pending job to `parsing` and return it, or None.

    The conditional UPDATE makes the claim atomic on SQLite and PostgreSQL alike: of two workers
    racing for the same row, exactly one sees rowcount 1.
    """
    for _ in range(5):
        job_id = session.scalar(
            select(Job.id).where(Job.status == "pending").order_by(Job.created_at, Job.id).limit(1)
        )
        if job_id is None:
            return None
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "pending")
            .values(status="parsing", started_at=utcnow(), updated_at=utcnow(), attempts=Job.attempts + 1)
        ).rowcount
        session.commit()
        if claimed == 1:
            return session.get(Job, job_id, populate_existing=True)
    return None


def set_job_status(session: Session, job: Job, status: str, *, error: str | None = None, result: dict | None = None) -> None:
    job.status = status
    job.updated_at = utcnow()
    if error is not None:
        job.error = error
    if result is not None:
        job.result = result
    if status in ("indexed", "failed"):
        job.finished_at = utcnow()
        job.payload = None  # the upload is no longer needed once the job has ended
    session.flush()


def job_to_dict(job: Job) -> dict:
    return {
        "job_id": job.id,
        "status": job.status,
        "collection": job.collection.name if job.collection else None,
        "kind": job.kind,
        "filename": job.filename,
        "document_id": job.external_id,
        "error": job.error,
        "attempts": job.attempts,
        "result": job.result or {},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None
