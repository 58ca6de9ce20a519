"""`ingest` (files or folders, in this process) and `worker` (jobs queued over HTTP)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click

from ingestion.parsers.detect import SUPPORTED_EXTENSIONS
from search_service.cli.base import Context, fail, load_services, main
from search_service.errors import ServiceError
from search_service.settings import Settings

log = logging.getLogger("search_service.worker")


def collect_files(paths: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """(external id, path) pairs: a folder is walked, ids are paths relative to it."""
    found = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower().lstrip(".") in SUPPORTED_EXTENSIONS and not file.name.startswith("."):
                    found.append((file.relative_to(path).as_posix(), file))
        else:
            found.append((path.name, path))
    return found


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", required=True, help="Collection name (created if missing; HTTP uploads need an existing one).")
@click.pass_obj
def ingest(ctx: Context, paths, collection):
    """Parse, chunk, embed and index files or folders (txt, md, html, pdf, docx, corpus.jsonl)."""
    from ingestion.pipeline import SourceDocument

    services = load_services(ctx, with_rerankers=False)
    documents = [
        SourceDocument(external_id=ext_id, data=path.read_bytes(), filename=path.name, source=str(path))
        for ext_id, path in collect_files(paths)
    ]
    if not documents:
        fail(f"no supported files found ({', '.join(sorted(SUPPORTED_EXTENSIONS))})")
    try:
        results = services.ingestion.ingest(collection, documents, progress=True)
    except ServiceError as exc:
        fail(exc.message)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
        if result.status == "failed":
            click.echo(f"failed: {result.external_id}: {result.error}", err=True)
    chunks = sum(r.chunks for r in results)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(f"{collection}: {summary}; {chunks} chunks embedded")
    if counts.get("failed") == len(results):
        sys.exit(1)


@main.command()
@click.option("--once", is_flag=True, help="Process the pending jobs, then exit.")
@click.pass_obj
def worker(ctx: Context, once):
    """Run the ingestion worker: claims queued upload jobs and indexes them."""
    from search_service.logs import configure_logging

    configure_logging(ctx.settings.log_format)
    services = load_services(ctx, with_rerankers=False)
    settings = ctx.settings
    runner = make_worker(services, settings)
    log.info("worker started; waiting for jobs")  # in RAG_LOG_FORMAT, like every other line
    if once:
        while runner.run_once() is not None:
            pass
        return
    stop_on_signals(runner)
    try:
        runner.run()
    except KeyboardInterrupt:
        runner.stopping.set()
        log.warning("worker stopped at once (a second signal); a job it held is retried once its "
                    "lease expires")
        sys.exit(130)


def stop_on_signals(runner) -> None:
    """SIGTERM (`docker stop`) or SIGINT: finish the job in hand, then exit 0; a second signal
    stops at once. Installed for SIGINT too where the parent ignored it (a background job)."""

    def stop(_signum, _frame):
        if runner.stop_requested:
            raise KeyboardInterrupt
        runner.stop_requested = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def make_worker(services, settings: Settings):
    from ingestion.worker import Worker

    return Worker(services.database, services.ingestion, settings.worker_poll_seconds,
                  lease_seconds=settings.job_lease_seconds, max_attempts=settings.job_max_attempts)
