"""`migrate`, `reindex`, `move-collection` and `keys create|list|revoke`."""

from __future__ import annotations

import json

import click

from search_service.cli.base import Context, fail, main
from search_service.errors import ServiceError


@main.command()
@click.pass_obj
def migrate(ctx: Context):
    """Create or upgrade the database schema (alembic upgrade head)."""
    from sqlalchemy.engine import make_url

    from search_service.store.db import migrate as run_migrations

    try:
        run_migrations(ctx.settings.database_url, vector_backend=ctx.settings.vector_backend)
    except ServiceError as exc:
        fail(exc.message)
    shown = make_url(ctx.settings.database_url).render_as_string(hide_password=True)
    click.echo(f"database at revision head: {shown}")


@main.group()
def keys():
    """Create, list and revoke API keys (only a hash of each key is stored)."""


def _key_database(ctx: Context):
    from search_service.store.db import Database, require_migrated

    database = Database(ctx.settings.database_url)
    click.get_current_context().call_on_close(database.dispose)
    try:
        require_migrated(database)
    except ServiceError as exc:
        fail(exc.message)
    return database


@keys.command("create")
@click.option("--name", required=True, help="Who or what uses the key (shown in lists).")
@click.option("--role", type=click.Choice(["read", "write", "admin"]), required=True,
              help="read: search and read; write: also upload and delete documents; admin: also delete collections, /metrics.")
@click.option("--collections", required=True, help="Comma-separated collection names, or '*' for all.")
@click.pass_obj
def keys_create(ctx: Context, name, role, collections):
    """Create a key and print it once; it cannot be shown again."""
    from search_service.store.keys import create_key

    with _key_database(ctx).session() as session:
        try:
            row, key = create_key(session, name=name, role=role, collections=collections)
        except ServiceError as exc:
            fail(exc.message)
        summary = f"created key {row.prefix} ({row.name}, {row.role}, collections: {','.join(row.collections)})"
    click.echo(summary, err=True)
    click.echo("store it now; it is not shown again:", err=True)
    click.echo(key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def keys_list(ctx: Context, as_json):
    """List keys (prefix, name, role, collections, dates); never the keys themselves."""
    from search_service.store.keys import key_to_dict, list_keys

    with _key_database(ctx).session() as session:
        rows = [key_to_dict(row) for row in list_keys(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(f"{row['prefix']}  {row['role']:<5}  {','.join(row['collections']):<30}  {row['name']}  "
                   f"({state}; last used {row['last_used_at'] or 'never'})")


@keys.command("revoke")
@click.argument("prefix")
@click.pass_obj
def keys_revoke(ctx: Context, prefix):
    """Revoke the key with PREFIX (the 12 characters after 'rag_'); it stops working at once."""
    from search_service.store.keys import revoke_key

    with _key_database(ctx).session() as session:
        try:
            row = revoke_key(session, prefix)
        except ServiceError as exc:
            fail(exc.message)
        click.echo(f"revoked key {row.prefix} ({row.name})")


@main.command()
@click.option("--collection", "-c", "names", multiple=True, help="Only these collections (default: all).")
@click.pass_obj
def reindex(ctx: Context, names):
    """Rebuild indexes from the database: FAISS snapshots (after a crash, a lost or corrupt
    index), pgvector HNSW indexes (after changing RAG_PGVECTOR_HNSW_M or _EF_CONSTRUCTION)."""
    from search_service.retrieval.vector_store import VectorStores
    from search_service.store import collections as store
    from search_service.store.db import Database, require_migrated

    database = Database(ctx.settings.database_url)
    try:
        require_migrated(database)
        indexes = VectorStores(ctx.settings)
        with database.session() as session:
            collections = [store.get_collection(session, n) for n in names] or [
                c for c, _, _ in store.list_collections(session)
            ]
            for collection in collections:
                done = indexes.rebuild(session, collection)
                count = indexes.count(session, collection)
                click.echo(f"{collection.name}: {count} vectors -> {done}")
    except ServiceError as exc:
        fail(exc.message)
    finally:
        database.dispose()


@main.command("move-collection")
@click.argument("name")
@click.option("--to", "backend", type=click.Choice(["faiss", "pgvector"]), required=True, help="The backend to move it to.")
@click.option("--pgvector-type", type=click.Choice(["vector", "halfvec"]), default=None, help="pgvector column type (default RAG_PGVECTOR_TYPE).")
@click.pass_obj
def move_collection(ctx: Context, name, backend, pgvector_type):
    """Move a collection's vectors to another backend, in one transaction (searches keep working:
    they see the old backend until it commits)."""
    from search_service.store import collections as store
    from search_service.store.db import Database, require_migrated
    from search_service.store.vectors import VectorLayout, move_collection

    settings = ctx.settings.replace(vector_backend=backend, pgvector_type=pgvector_type)
    database = Database(settings.database_url)
    try:
        require_migrated(database)
        with database.session() as session:
            collection = store.get_collection(session, name)
            before = collection.vector_backend
            moved = move_collection(session, collection, VectorLayout.from_settings(settings))
        click.echo(f"{name}: {before} -> {backend} ({moved} vectors)")
    except ServiceError as exc:
        fail(exc.message)
    finally:
        database.dispose()
