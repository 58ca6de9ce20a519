"""`serve`: waitress (optionally with ingestion worker threads) or gunicorn."""

from __future__ import annotations

import click

from search_service.cli.base import Context, fail, load_services, main
from search_service.cli.ingest import make_worker
from search_service.errors import ServiceError
from search_service.settings import Settings


@main.command()
@click.option("--host", help="Overrides RAG_HOST (default 127.0.0.1).")
@click.option("--port", type=int, help="Overrides RAG_PORT (default 8000).")
@click.option("--threads", type=int, default=8, show_default=True, help="Request threads (per process).")
@click.option("--server", "server_kind", type=click.Choice(["waitress", "gunicorn"]), default="waitress",
              show_default=True, help="WSGI server; gunicorn needs the `gunicorn` extra.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="gunicorn only: processes, each loading its own models.")
@click.option("--ingest-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="waitress only: ingestion workers run as threads of the server (one process for "
                   "small setups; run `search-service worker` separately to scale out).")
@click.pass_obj
def serve(ctx: Context, host, port, threads, server_kind, workers, ingest_workers):
    """Serve the HTTP API (models load before the port opens; SIGTERM drains in-flight requests)."""
    if workers != 1 and server_kind != "gunicorn":
        fail("--workers needs --server gunicorn (waitress serves one process; run several behind a balancer)")
    if ingest_workers and server_kind == "gunicorn":
        fail("--ingest-workers runs with waitress only; beside gunicorn run `search-service worker`")
    from search_service.cli.startup import log_startup
    from search_service.logs import configure_logging

    settings = ctx.settings.replace(host=host, port=port)
    configure_logging(settings.log_format)
    if server_kind == "gunicorn":
        _serve_gunicorn(settings, threads, workers)
        return
    from search_service.app import create_app
    from search_service.server import serve as run_server

    services = load_services(Context(settings))
    app = create_app(services=services)
    threads_, watch = _start_ingestion(services, settings, ingest_workers)
    log_startup(settings, services, server=f"waitress, {threads} threads", ingest_workers=ingest_workers)
    try:
        run_server(app, host=settings.host, port=settings.port, threads=threads,
                   shutdown_timeout=settings.shutdown_timeout_seconds)
    finally:
        watch.stop()
        if threads_ is not None:
            threads_.stop(timeout=settings.shutdown_timeout_seconds)


def _start_ingestion(services, settings: Settings, count: int):
    """`count` supervised ingestion worker threads on the server's services (models load once),
    reported by /readyz, and the watch that warns when uploads wait with no worker."""
    from ingestion.supervision import UnclaimedJobsWatch, WorkerThreads

    threads = None
    if count:
        threads = WorkerThreads(lambda: make_worker(services, settings), count)
        threads.start()
        services.ingest_workers = threads
    watch = UnclaimedJobsWatch(services.database, settings.job_unclaimed_warn_s, threads)
    watch.start()
    return threads, watch


def _serve_gunicorn(settings: Settings, threads: int, workers: int) -> None:
    """gunicorn: the schema is checked here; each worker process loads the models after the fork."""
    import importlib.util

    from search_service.cli.startup import log_startup
    from search_service.server import serve_gunicorn
    from search_service.store.db import Database, require_migrated

    if importlib.util.find_spec("gunicorn") is None:
        fail("gunicorn is not installed: pip install 'search-service[gunicorn]' (or use --server waitress)")
    database = Database(settings.database_url)
    try:
        require_migrated(database)
    except ServiceError as exc:
        fail(exc.message)
    finally:
        database.dispose()

    def load_app():
        from search_service.app import create_app
        from search_service.services import build_services

        return create_app(services=build_services(settings))

    log_startup(settings, server=f"gunicorn, {workers} worker(s) x {threads} threads")
    serve_gunicorn(load_app, host=settings.host, port=settings.port, threads=threads, workers=workers,
                   shutdown_timeout=settings.shutdown_timeout_seconds)
