"""Revision 0004 keeps existing jobs: their collection's name is copied onto them."""

from sqlalchemy import text

from search_service.store.db import Database, migrate


def test_upgrading_to_0004_names_existing_jobs_and_downgrading_keeps_them(database_url):
    migrate(database_url, "0003")
    database = Database(database_url)
    now = "2026-12-01 00:00:00+00:00"
    with database.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO collections (id, name, embedder_model, dimension, chunk_tokens, chunk_overlap, "
            "vector_version, created_at) VALUES (1, 'old', 'm', 4, 64, 8, 0, :now)"), {"now": now})
        connection.execute(text(
            "INSERT INTO jobs (id, collection_id, status, kind, metadata, attempts, result, created_at, "
            "updated_at) VALUES ('00000000-0000-0000-0000-000000000001', 1, 'pending', 'documents', "
            "'{}', 0, '{}', :now, :now)"), {"now": now})
    migrate(database_url, "head")
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT collection_name, request_id FROM jobs")).one() == ("old", None)
    migrate_down(database_url)
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
    database.dispose()


def migrate_down(url: str) -> None:
    from alembic import command

    from search_service.store.db import alembic_config

    command.downgrade(alembic_config(url), "0003")
