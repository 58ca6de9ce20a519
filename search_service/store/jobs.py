"""Ingestion jobs: created by the API, claimed and advanced by workers.

Every change a worker makes to a job is conditional on still holding it (`worker_id` and an
active status), so a worker that lost its job (lease taken over, collection deleted) changes
nothing and learns so from a False return, never from an exception in its error path.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from search_service.errors import NotFoundError
from search_service.store.models import FINAL_JOB_STATES, Collection, Job, utcnow

log = logging.getLogger(__name__)

ACTIVE_STATES = ("parsing", "embedding")
UNCLAIMED_HINT = (
    "no worker has claimed this job; start `search-service worker` or `serve --ingest-workers 1`"
)


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
    request_id: str | None = None,
) -> Job:
    job = Job(
        id=str(uuid.uuid4()),
        collection_id=collection.id,
        collection_name=collection.name,
        status="pending",
        kind=kind,
        payload=payload,
        filename=filename,
        content_type=content_type,
        external_id=external_id,
        meta=metadata or {},
        attempts=0,
        result={},
        request_id=request_id,
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


def _claimable(now):
    lease_expired = Job.status.in_(ACTIVE_STATES) & (Job.lease_expires_at < now)
    waiting = (Job.status == "pending") & ((Job.run_after.is_(None)) | (Job.run_after <= now))
    return waiting | lease_expired


def _ended(status: str, code: str, message: str, now: datetime) -> dict:
    return {"status": status, "error_code": code, "error": f"{code}: {message}", "finished_at": now,
            "updated_at": now, "lease_expires_at": None, "payload": None}


def fail_exhausted_jobs(session: Session, max_attempts: int) -> int:
    """Jobs whose worker died on every one of their `max_attempts` tries end as failed."""
    now = utcnow()
    message = f"the worker stopped while processing this job on each of {max_attempts} attempts"
    exhausted = (Job.status.in_(ACTIVE_STATES), Job.lease_expires_at < now, Job.attempts >= max_attempts)
    job_ids = list(session.scalars(select(Job.id).where(*exhausted)))
    if not job_ids:
        return 0
    failed = session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), *exhausted)
        .values(**_ended("failed", "worker_lost", message, now))
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    for job_id in job_ids:
        log.error("job %s failed: worker_lost", job_id, extra={"job_id": job_id, "code": "worker_lost"})
    return failed


def claim_next_job(session: Session, worker_id: str, *, lease_seconds: float = 60.0, max_attempts: int = 3) -> Job | None:
    """Move the oldest claimable job to `parsing` under a lease for `worker_id`, or return None.

    Claimable: pending (and past its back-off), or in progress with an expired lease (its worker
    died). On PostgreSQL the candidate row is locked with FOR UPDATE SKIP LOCKED, so concurrent
    workers pick different jobs; on both databases the conditional UPDATE makes the claim atomic
    (rowcount 1 wins).
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
                run_after=None,
                attempts=Job.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if claimed == 1:
            return session.get(Job, job_id, populate_existing=True)
    return None


def _held(job_id: str, worker_id: str):
    return (Job.id == job_id) & (Job.worker_id == worker_id) & Job.status.in_(ACTIVE_STATES)


def renew_lease(session: Session, job_id: str, worker_id: str, lease_seconds: float) -> bool:
    """Heartbeat: push the lease forward; False if another worker took the job over."""
    renewed = session.execute(
        update(Job)
        .where(_held(job_id, worker_id))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount
    return renewed == 1


def owns_job(session: Session, job_id: str, worker_id: str) -> bool:
    owner = session.execute(
        select(Job.worker_id, Job.status).where(Job.id == job_id).with_for_update()
    ).first()
    return owner is not None and owner[0] == worker_id and owner[1] in ACTIVE_STATES


def writes_around(session: Session, job_id: str) -> tuple[set[str], set[str]]:
    """Documents other jobs of this job's collection stored (created, replaced or found unchanged):
    (by jobs queued after this one, whenever they ran; by jobs queued before it that finished
    since this attempt was claimed). With several workers, jobs of one collection run out of
    order; the upload queued last must win whichever finishes first."""
    job = session.get(Job, job_id)
    rows = session.execute(
        select(Job.created_at, Job.result).where(
            Job.collection_id == job.collection_id, Job.id != job.id,
            Job.status.in_(("indexed", "indexed_with_errors")),
            or_(Job.created_at > job.created_at, Job.finished_at >= job.started_at),
        )
    ).all()
    newer: set[str] = set()
    older: set[str] = set()
    for created_at, result in rows:
        report = (result or {}).get("report") or {}
        stored = {i for key in ("created", "replaced", "unchanged") for i in report.get(key, [])}
        (newer if created_at > job.created_at else older).update(stored)
    return newer, older


def advance_job(session: Session, job_id: str, worker_id: str, status: str) -> bool:
    """Move a held job to another active status; False if this worker no longer holds it."""
    return session.execute(
        update(Job).where(_held(job_id, worker_id)).values(status=status, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def end_job(session: Session, job_id: str, worker_id: str, status: str, code: str, message: str) -> bool:
    """End a held job as `failed` or `cancelled` with a slug and a safe message."""
    return session.execute(
        update(Job).where(_held(job_id, worker_id)).values(**_ended(status, code, message, utcnow()))
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def retry_job(session: Session, job_id: str, worker_id: str, code: str, message: str, delay_s: float) -> bool:
    """Hand a held job back to the queue, claimable again after `delay_s` (its back-off)."""
    now = utcnow()
    return session.execute(
        update(Job).where(_held(job_id, worker_id)).values(
            status="pending", error_code=code, error=f"{code}: {message}", worker_id=None,
            lease_expires_at=None, updated_at=now, run_after=now + timedelta(seconds=delay_s))
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def detach_collection_jobs(session: Session, collection: Collection) -> None:
    """Before a collection is deleted: its unfinished jobs end `cancelled`, and every job of it
    stays readable under the collection's name (no longer tied to its row)."""
    now = utcnow()
    message = f"collection {collection.name!r} was deleted before this job finished"
    session.execute(
        update(Job)
        .where(Job.collection_id == collection.id, Job.status.not_in(FINAL_JOB_STATES))
        .values(**_ended("cancelled", "collection_deleted", message, now), worker_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Job).where(Job.collection_id == collection.id)
        .values(collection_id=None, collection_name=collection.name)
        .execution_options(synchronize_session=False)
    )


def list_jobs(session: Session, collection: Collection, *, limit: int, offset: int, status: str | None = None) -> tuple[list[Job], int]:
    query = select(Job).where(Job.collection_id == collection.id)
    if status:
        query = query.where(Job.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    jobs = session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).all()
    return list(jobs), int(total or 0)


def set_job_status(session: Session, job: Job, status: str, *, error: str | None = None,
                   error_code: str | None = None, result: dict | None = None) -> None:
    job.status = status
    job.updated_at = utcnow()
    if error is not None:
        job.error = error
        job.error_code = error_code
    elif status in FINAL_JOB_STATES:
        job.error = job.error_code = None  # an earlier attempt's error is no longer the truth
    if result is not None:
        job.result = result
    if status in FINAL_JOB_STATES:
        job.finished_at = utcnow()
        job.lease_expires_at = None
        job.payload = None  # the upload is no longer needed once the job has ended
    session.flush()


def unclaimed_jobs(session: Session, older_than_s: float) -> tuple[int, int]:
    """(pending jobs waiting longer than `older_than_s`, signs of a live worker: jobs held under
    a live lease now or finished within `older_than_s`)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_s)
    since = func.coalesce(Job.run_after, Job.created_at)
    waiting = session.scalar(select(func.count()).where(Job.status == "pending", since < cutoff))
    seen = session.scalar(
        select(func.count()).where(
            (Job.status.in_(ACTIVE_STATES) & (Job.lease_expires_at >= now)) | (Job.finished_at >= cutoff)
        )
    )
    return int(waiting or 0), int(seen or 0)


def job_to_dict(job: Job, *, unclaimed_warn_s: float | None = None) -> dict:
    report = (job.result or {}).get("report")
    body = {
        "job_id": job.id,
        "status": job.status,
        "collection": job.collection_name or (job.collection.name if job.collection else None),
        "kind": job.kind,
        "filename": job.filename,
        "document_id": job.external_id,
        "error": job.error,
        "error_code": job.error_code,
        "attempts": job.attempts,
        "worker_id": job.worker_id,
        "request_id": job.request_id,
        "documents": report if isinstance(report, dict) else None,
        "result": job.result or {},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }
    if unclaimed_warn_s is not None and job.status == "pending":
        since = _aware(job.run_after or job.created_at)
        if since is not None and (utcnow() - since).total_seconds() > unclaimed_warn_s:
            body["hint"] = UNCLAIMED_HINT
    return body


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is not None and value.tzinfo is None:  # SQLite returns naive UTC datetimes
        return value.replace(tzinfo=UTC)
    return value


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None
