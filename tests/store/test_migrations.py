import pytest
from sqlalchemy import inspect

from search_service.errors import DatabaseNotMigratedError
from search_service.store.db import Database, migrate, require_migrated


def test_migrate_creates_the_schema_and_is_idempotent(database_url):
    database = Database(database_url)
    with pytest.raises(DatabaseNotMigratedError, match="search-service migrate"):
        require_migrated(database)
    migrate(database_url)
    migrate(database_url)  # a second run is a no-op
    require_migrated(database)
    tables = set(inspect(database.engine).get_table_names())
    assert {"collections", "documents", "chunks", "jobs", "alembic_version"} <= tables
    database.dispose()


def test_schema_matches_the_models(migrated_url):
    """The migrations are the only DDL, so they must agree with the models (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from search_service.store.models import Base

    database = Database(migrated_url)
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    database.dispose()
    assert diff == []
