"""Ingestion jobs: created by the API, claimed and advanced by workers."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select, update
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


ACTIVE_STATES = ("parsing", "embedding")


def _claimable(now):
    lease_expired = Job.status.in_(ACTIVE_STATES) & (Job.lease_expires_at < now)
    return (Job.status == "pending") | lease_expired


def fail_exhausted_jobs(session: Session, max_attempts: int) -> int:
    """Jobs whose worker died on every one of their `max_attempts` tries end as failed."""
    now = utcnow()
    failed = session.execute(
        update(Job)
        .where(Job.status.in_(ACTIVE_STATES), Job.lease_expires_at < now, Job.attempts >= max_attempts)
        .values(
            status="failed",
            error=f"the worker stopped while processing this job on each of {max_attempts} attempts",
            finished_at=now,
            updated_at=now,
            payload=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return failed


def claim_next_job(session: Session, worker_id: str, *, lease_seconds: float = 60.0, max_attempts: int = 3) -> Job | None:
    """Move the oldest claimable job to `parsing` under a lease for `worker_id`, or return None.

    Claimable: pending, or in progress with an expired lease (its worker died). On PostgreSQL the
    candidate row is locked with FOR UPDATE SKIP LOCKED, so concurrent workers pick different
    jobs; on both databases the conditional UPDATE makes the claim atomic (rowcount 1 wins).
    """
    fail_exhausted_jobs(session, max_attempts)
    postgres = session.get_bind().dialect.name == "postgresql"
    for _ in range(5):
        now = utcnow()
        candidate = select(Job.id).where(_claimable(now)).order_by(Job.created_at, Job.id).limit(1)
        if postgres:
            candidate = candidate.with_for_update(skip_locked=True)
        job_id = session.scalar(candidate)
        if job_id is None:
            session.commit()
            return None
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, _claimable(now))
            .values(
                status="parsing",
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=now,
                updated_at=now,
                attempts=Job.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if claimed == 1:
            return session.get(Job, job_id, populate_existing=True)
    return None


def renew_lease(session: Session, job_id: str, worker_id: str, lease_seconds: float) -> bool:
    """Heartbeat: push the lease forward; False if another worker took the job over."""
    renewed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status.in_(ACTIVE_STATES))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount
    return renewed == 1


def owns_job(session: Session, job_id: str, worker_id: str) -> bool:
    owner = session.execute(
        select(Job.worker_id, Job.status).where(Job.id == job_id).with_for_update()
    ).first()
    return owner is not None and owner[0] == worker_id and owner[1] in ACTIVE_STATES


def list_jobs(session: Session, collection: Collection, *, limit: int, offset: int, status: str | None = None) -> tuple[list[Job], int]:
    query = select(Job).where(Job.collection_id == collection.id)
    if status:
        query = query.where(Job.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    jobs = session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).all()
    return list(jobs), int(total or 0)


def set_job_status(session: Session, job: Job, status: str, *, error: str | None = None, result: dict | None = None) -> None:
    job.status = status
    job.updated_at = utcnow()
    if error is not None:
        job.error = error
    if result is not None:
        job.result = result
    if status in ("indexed", "failed"):
        job.finished_at = utcnow()
        job.lease_expires_at = None
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
        "worker_id": job.worker_id,
        "result": job.result or {},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None
