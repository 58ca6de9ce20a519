"""What an error means for the job it ended: permanent, transient, or the collection being gone.

`classify(exc)` decides between ending the job `failed` (the same input would fail again:
validation, integrity, unsupported or broken content), retrying it after a back-off (connection
lost, lock timeout, database restarting, a full disk) and ending it `cancelled` (its collection
was deleted). The job's message is written here, never copied from a database or system error:
SQL, parameters, paths and tracebacks go only to the worker's log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from ingestion.parsers import ParseError
from search_service.errors import NotFoundError, ServiceError


@dataclass(frozen=True)
class JobError:
    outcome: str  # "failed" | "retry" | "cancelled"
    code: str
    message: str


class CollectionGoneError(NotFoundError):
    """The job's collection was deleted (or replaced by a new one of the same name)."""

    code = "collection_not_found"


COLLECTION_DELETED = JobError(
    "cancelled", "collection_deleted", "the collection was deleted before this job finished"
)
CONTENT_REJECTED = JobError(
    "failed", "content_rejected",
    "the database refused to store this content (for example a NUL character in the text or a "
    "non-finite number such as Infinity in the metadata); fix it and upload it again",
)
CONFLICT = JobError(
    "failed", "integrity_error", "the database refused this change as conflicting with stored data"
)
DATABASE_UNAVAILABLE = JobError(
    "retry", "database_unavailable", "the database was unreachable or busy; the job is retried"
)
SYSTEM_ERROR = JobError(
    "retry", "system_error", "the worker ran out of a system resource (disk, memory or a file); "
    "the job is retried",
)
UNEXPECTED = JobError("retry", "internal_error", "the worker hit an unexpected error; see its log")

# PostgreSQL SQLSTATE classes: 08 connection, 40 rollback (deadlock, serialization), 53
# insufficient resources, 55 lock not available, 57 operator intervention (restart, shutdown).
TRANSIENT_SQLSTATE = ("08", "40", "53", "55", "57", "58")


def classify(exc: BaseException) -> JobError:
    if isinstance(exc, CollectionGoneError) or (
        isinstance(exc, NotFoundError) and exc.code == "collection_not_found"
    ):
        return COLLECTION_DELETED
    if isinstance(exc, ParseError):  # the parsers' messages describe the content, nothing more
        return JobError("failed", exc.code, str(exc))
    if isinstance(exc, ServiceError):  # our own errors: written for users
        return JobError("failed", exc.code, exc.message)
    if isinstance(exc, sa_exc.DBAPIError):
        return _database_error(exc)
    if isinstance(exc, UnicodeError) or (
        isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, ValueError)
    ):  # text the driver cannot encode (a lone surrogate, a NUL byte)
        return CONTENT_REJECTED
    if isinstance(exc, sa_exc.SQLAlchemyError):  # closed connections, rolled-back sessions, pools
        return DATABASE_UNAVAILABLE
    if isinstance(exc, (OSError, MemoryError, TimeoutError)):
        return SYSTEM_ERROR
    return UNEXPECTED


def _database_error(exc: sa_exc.DBAPIError) -> JobError:
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if exc.connection_invalidated or sqlstate.startswith(TRANSIENT_SQLSTATE):
        return DATABASE_UNAVAILABLE
    if isinstance(exc, sa_exc.IntegrityError) or sqlstate.startswith("23"):
        return CONFLICT
    if isinstance(exc, sa_exc.DataError) or sqlstate.startswith("22"):
        return CONTENT_REJECTED
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return DATABASE_UNAVAILABLE  # SQLite "database is locked", a connection gone mid-query
    return UNEXPECTED
