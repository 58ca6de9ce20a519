"""Engine, sessions and the Alembic entry points (`migrate`, `require_migrated`)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from search_service.errors import DatabaseNotMigratedError, ServiceError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the API read while the worker writes; foreign keys make ON DELETE CASCADE work.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """An engine plus a session factory; one per process."""

    def __init__(self, url: str, new_collections=None):
        """`new_collections`: the `store.vectors.VectorLayout` collections created through this
        database get (RAG_VECTOR_BACKEND); FAISS when not given."""
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(
            self.engine, expire_on_commit=False, info={"vector_layout": new_collections}
        )

    @contextmanager
    def session(self):
        """A session that commits on success and rolls back on error."""
        session: Session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except OperationalError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head", vector_backend: str = "faiss") -> None:
    """Bring the schema to `revision` (the only code path that creates tables).

    With `vector_backend="pgvector"` the pgvector schema (extension, `chunk_vectors`) is created
    too, also on a database migrated earlier with FAISS (it is idempotent)."""
    engine = make_engine(url)  # creates the SQLite directory if needed
    try:
        config = alembic_config(url)
        config.attributes["vector_backend"] = vector_backend
        command.upgrade(config, revision)
        if vector_backend == "pgvector":
            from search_service.store.vectors import ensure_pgvector_schema

            with engine.begin() as connection:
                ensure_pgvector_schema(connection)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_migrated(database: Database) -> None:
    """Refuse to run on a database that `search-service migrate` has not brought to head."""
    head = ScriptDirectory.from_config(alembic_config(database.url)).get_current_head()
    try:
        current = current_revision(database.engine)
    except OperationalError as exc:
        raise ServiceError(
            f"cannot connect to the database at {database.engine.url.render_as_string()}: {exc.orig}",
            code="database_unavailable",
            status=503,
        ) from exc
    if current != head:
        state = "has no schema" if current is None else f"is at revision {current}"
        raise DatabaseNotMigratedError(
            f"the database {database.engine.url.render_as_string()} {state}, expected {head}; "
            "run `search-service migrate` first"
        )
