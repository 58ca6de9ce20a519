"""`search-service`: migrate, ingest, worker, serve, search, rerank."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import click

from search_service.errors import ServiceError
from search_service.settings import DISABLED, Settings

SUPPORTED_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm"}


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Overrides RAG_DATA_DIR.")
@click.option("--database-url", help="Overrides RAG_DATABASE_URL.")
@click.option("--embedder-model", help="Overrides RAG_EMBEDDER_MODEL (hub id or local directory).")
@click.option("--reranker-model", help="Overrides RAG_RERANKER_MODEL ('none' disables reranking).")
@click.option("--device", help="Overrides RAG_DEVICE: auto, cpu, cuda, cuda:N or mps.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.pass_context
def main(ctx, data_dir, database_url, embedder_model, reranker_model, device, verbose):
    """Rerank-first retrieval service for RAG. Settings come from RAG_* variables; options override."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for package in ("search_service", "ingestion", "waitress"):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)
    disable_reranker = reranker_model is not None and reranker_model.strip().lower() in DISABLED
    try:
        settings = Settings.from_env(
            data_dir=data_dir,
            database_url=database_url,
            embedder_model=embedder_model,
            reranker_model=None if disable_reranker else reranker_model,
            device=device,
        )
        if disable_reranker:
            settings = dataclasses.replace(settings, reranker_model=None)
    except ServiceError as exc:
        fail(exc.message)
    ctx.obj = Context(settings)


def _services(ctx: Context, **kwargs):
    from search_service.services import build_services

    try:
        services = build_services(ctx.settings, **kwargs)
    except ServiceError as exc:
        fail(exc.message)
    click.get_current_context().call_on_close(services.close)
    return services


@main.command()
@click.pass_obj
def migrate(ctx: Context):
    """Create or upgrade the database schema (alembic upgrade head)."""
    from search_service.store.db import migrate as run_migrations

    run_migrations(ctx.settings.database_url)
    click.echo(f"database at revision head: {ctx.settings.database_url}")


def collect_files(paths: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """(external id, path) pairs: a folder is walked, ids are paths relative to it."""
    found = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower() in SUPPORTED_SUFFIXES and not file.name.startswith("."):
                    found.append((file.relative_to(path).as_posix(), file))
        else:
            found.append((path.name, path))
    return found


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", required=True, help="Collection name (created if missing).")
@click.pass_obj
def ingest(ctx: Context, paths, collection):
    """Parse, chunk, embed and index files or folders (txt, md, html)."""
    from ingestion.pipeline import SourceDocument

    services = _services(ctx, with_rerankers=False)
    documents = [
        SourceDocument(external_id=ext_id, data=path.read_bytes(), filename=path.name, source=str(path))
        for ext_id, path in collect_files(paths)
    ]
    if not documents:
        fail("no supported files found (txt, md, html)")
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
@click.option("--collection", "-c", "names", multiple=True, help="Only these collections (default: all).")
@click.pass_obj
def reindex(ctx: Context, names):
    """Rebuild FAISS snapshots from the database (after a crash, a lost or corrupt index)."""
    from search_service.retrieval.index import IndexManager
    from search_service.store import collections as store
    from search_service.store.db import Database, require_migrated

    database = Database(ctx.settings.database_url)
    try:
        require_migrated(database)
        indexes = IndexManager(ctx.settings.index_dir, kind=ctx.settings.index_type, flat_max=ctx.settings.index_flat_max)
        with database.session() as session:
            collections = [store.get_collection(session, n) for n in names] or [
                c for c, _, _ in store.list_collections(session)
            ]
            for collection in collections:
                path = indexes.rebuild(session, collection)
                count = len(indexes.get(session, collection))
                click.echo(f"{collection.name}: {count} vectors -> {path}")
    except ServiceError as exc:
        fail(exc.message)
    finally:
        database.dispose()


@main.command()
@click.option("--once", is_flag=True, help="Process the pending jobs, then exit.")
@click.pass_obj
def worker(ctx: Context, once):
    """Run the ingestion worker: claims queued upload jobs and indexes them."""
    from ingestion.worker import Worker

    services = _services(ctx, with_rerankers=False)
    settings = ctx.settings
    runner = Worker(
        services.database,
        services.ingestion,
        settings.worker_poll_seconds,
        lease_seconds=settings.job_lease_seconds,
        max_attempts=settings.job_max_attempts,
    )
    click.echo("worker started; waiting for jobs", err=True)
    if once:
        while runner.run_once() is not None:
            pass
        return
    try:
        runner.run()
    except KeyboardInterrupt:
        runner.stopping.set()


@main.command()
@click.option("--host", help="Overrides RAG_HOST (default 127.0.0.1).")
@click.option("--port", type=int, help="Overrides RAG_PORT (default 8000).")
@click.option("--threads", type=int, default=8, show_default=True, help="Request threads.")
@click.pass_obj
def serve(ctx: Context, host, port, threads):
    """Serve the HTTP API (models load before the port opens)."""
    import waitress

    from search_service.app import create_app

    settings = ctx.settings.replace(host=host, port=port)
    app = create_app(services=_services(Context(settings)))
    click.echo(f"serving on http://{settings.host}:{settings.port}", err=True)
    waitress.serve(app, host=settings.host, port=settings.port, threads=threads, ident="search-service")


@main.command()
@click.argument("query")
@click.option("--collection", "-c", required=True)
@click.option("--top-k", type=int, help="Overrides RAG_TOP_K.")
@click.option("--candidates", type=int, help="Overrides RAG_CANDIDATES.")
@click.option("--no-rerank", is_flag=True, help="Dense search only.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON response.")
@click.pass_obj
def search(ctx: Context, query, collection, top_k, candidates, no_rerank, as_json):
    """Search a collection from the command line."""
    services = _services(ctx, with_rerankers=not no_rerank)
    try:
        response = services.search.search(
            collection,
            query,
            top_k=top_k or ctx.settings.top_k,
            candidates=candidates or ctx.settings.candidates,
            rerank=False if no_rerank else None,
        )
    except ServiceError as exc:
        fail(exc.message)
    if as_json:
        click.echo(json.dumps(response, indent=2, ensure_ascii=False))
        return
    for rank, result in enumerate(response["results"], start=1):
        snippet = " ".join(result["text"].split())[:200]
        click.echo(f"{rank}. [{result['score']:.4f}] {result['document_id']} ({result['start']}-{result['end']})")
        click.echo(f"   {snippet}")


def _int_list(_ctx, param, value):
    if value is None:
        return None
    try:
        return [int(item) for item in value.split(",") if item.strip()]
    except ValueError:
        raise click.BadParameter("expected integers separated by commas", param=param) from None


@main.command()
@click.argument("query")
@click.argument("passages", nargs=-1)
@click.option("--file", "-f", "passage_file", type=click.File("r", encoding="utf-8"),
              help="Passages, one per line (blank lines skipped); '-' reads stdin.")
@click.option("--model", "-m", help="A RAG_RERANKERS name, or a hub id / local directory "
              "(default: the default reranker).")
@click.option("--family", help="Force the reranker family (encoder, llm, layerwise, lightweight).")
@click.option("--normalize", is_flag=True, help="Sigmoid scores in (0, 1) instead of raw logits.")
@click.option("--top-n", type=click.IntRange(min=1), help="Only the best N.")
@click.option("--prompt", help="llm, layerwise, lightweight: the instruction after the pair.")
@click.option("--cutoff-layers", callback=_int_list, help="layerwise, lightweight: the scoring layer.")
@click.option("--compress-ratio", type=int, help="lightweight: 1, 2, 4 or 8.")
@click.option("--compress-layers", callback=_int_list, help="lightweight: layers, e.g. 24,40.")
@click.option("--max-length", type=int, help="Token budget per pair (default 512).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON shaped like /v1/rerank.")
@click.pass_obj
def rerank(ctx: Context, query, passages, passage_file, model, family, normalize, top_n, as_json, **options):
    """Score PASSAGES (and --file lines) against QUERY, best first; no database needed."""
    from pydantic import ValidationError

    from search_service.api.errors import describe_validation_error
    from search_service.api.schemas import RerankOptions
    from search_service.retrieval.rerank import rerank_response
    from search_service.services import load_reranker_spec, pick_reranker_spec

    texts = list(passages)
    if passage_file is not None:
        texts += [line.rstrip("\r") for line in passage_file.read().split("\n") if line.strip()]
    if not texts:
        fail("no passages: give them as arguments or with --file (one per line, '-' for stdin)")
    try:
        requested = RerankOptions(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        fail(describe_validation_error(exc))
    spec = pick_reranker_spec(ctx.settings, model, family)
    if spec is None:
        fail("no reranker is configured: pass --model or set RAG_RERANKER_MODEL / RAG_RERANKERS")
    try:
        reranker = load_reranker_spec(spec, ctx.settings.device)
        response = rerank_response(
            reranker, spec.name, query, texts, top_n=top_n, raw_scores=not normalize,
            return_documents=True, options=requested.for_reranker(reranker),
        )
    except ServiceError as exc:
        fail(exc.message)
    if as_json:
        click.echo(json.dumps(response, indent=2, ensure_ascii=False))
        return
    for rank, result in enumerate(response["results"], start=1):
        snippet = " ".join(result["document"]["text"].split())[:200]
        click.echo(f"{rank}. [{result['relevance_score']:.4f}] #{result['index']} {snippet}")
