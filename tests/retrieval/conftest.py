"""The pgvector server, started once per session when a pgvector test runs."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pgvector_admin_url():
    from tests.support.pgvector_server import pgvector_server

    with pgvector_server() as url:
        yield url


@pytest.fixture
def pgvector_url(pgvector_admin_url):
    """A fresh database on the pgvector server, migrated with RAG_VECTOR_BACKEND=pgvector."""
    from search_service.store.db import migrate
    from tests.support.pgvector_server import throwaway_database

    with throwaway_database(pgvector_admin_url) as url:
        migrate(url, vector_backend="pgvector")
        yield url
