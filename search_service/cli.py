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
        indexes = IndexManager.from_settings(ctx.settings)
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
    from search_service.observability import configure_logging

    configure_logging(ctx.settings.log_format)
    services = _services(ctx, with_rerankers=False)
    settings = ctx.settings
    runner = _make_worker(services, settings)
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
    from search_service.auth import startup_warning
    from search_service.observability import configure_logging

    settings = ctx.settings.replace(host=host, port=port)
    configure_logging(settings.log_format)
    warning = startup_warning(settings)
    if warning:
        logging.getLogger("search_service.auth").warning(warning)
        click.echo(f"WARNING: {warning}", err=True)
    if server_kind == "gunicorn":
        _serve_gunicorn(settings, threads, workers)
        return
    from search_service.app import create_app
    from search_service.server import serve as run_server

    services = _services(Context(settings))
    app = create_app(services=services)
    runners = _start_ingest_workers(services, settings, ingest_workers)
    click.echo(f"serving on http://{settings.host}:{settings.port}", err=True)
    try:
        run_server(app, host=settings.host, port=settings.port, threads=threads,
                   shutdown_timeout=settings.shutdown_timeout_seconds)
    finally:
        for runner, thread in runners:
            runner.stopping.set()
        for runner, thread in runners:
            thread.join(timeout=settings.shutdown_timeout_seconds)


def _make_worker(services, settings: Settings):
    from ingestion.worker import Worker

    return Worker(services.database, services.ingestion, settings.worker_poll_seconds,
                  lease_seconds=settings.job_lease_seconds, max_attempts=settings.job_max_attempts)


def _start_ingest_workers(services, settings: Settings, count: int) -> list:
    """`count` ingestion workers as daemon threads on the server's services (models load once)."""
    import threading

    runners = []
    for index in range(count):
        runner = _make_worker(services, settings)
        thread = threading.Thread(target=runner.run, name=f"ingest-worker-{index}", daemon=True)
        thread.start()
        runners.append((runner, thread))
    if count:
        click.echo(f"{count} ingestion worker thread(s) started", err=True)
    return runners


def _serve_gunicorn(settings: Settings, threads: int, workers: int) -> None:
    """gunicorn: the schema is checked here; each worker process loads the models after the fork."""
    import importlib.util

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

    click.echo(f"serving on http://{settings.host}:{settings.port} (gunicorn, {workers} x {threads} threads)", err=True)
    serve_gunicorn(load_app, host=settings.host, port=settings.port, threads=threads, workers=workers,
                   shutdown_timeout=settings.shutdown_timeout_seconds)


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


@main.command("eval")
@click.option("--dataset", "datasets", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv); repeat for several.")
@click.option("--collection", "-c", required=True,
              help="Collection to fill and search (NAME-<folder name> each, with several datasets).")
@click.option("--split", default="test", show_default=True, help="Which qrels/<split>.tsv to score.")
@click.option("--reingest", is_flag=True, help="Delete and refill a collection that holds documents.")
@click.option("--reuse", is_flag=True, help="Search a filled collection as it is (same document ids).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("eval"),
              show_default=True, help="Folder for eval.json, eval.md and runs/*.trec.")
@click.option("--limit-queries", type=click.IntRange(min=1), help="Only the first N judged queries.")
@click.option("--stages", help="Comma-separated subset of dense,sparse,hybrid,reranked "
              "(default: every stage this service can run).")
@click.option("--chunk-tokens", type=click.IntRange(min=8), help="Chunk size of a new collection.")
@click.option("--chunk-overlap", type=click.IntRange(min=0), help="Chunk overlap of a new collection.")
@click.option("--truncate", is_flag=True, help="Cut each document to the tokens the embedder reads "
              "(max_seq_length minus special tokens), as MTEB does: one chunk per document.")
@click.option("--depth", type=click.IntRange(min=10), default=100, show_default=True,
              help="Chunks retrieved (and reranked) per query.")
@click.pass_obj
def eval_(ctx: Context, datasets, collection, split, reingest, reuse, output, limit_queries, stages,
          chunk_tokens, chunk_overlap, truncate, depth):
    """Measure retrieval quality (nDCG@10, Recall@10/50/100, MRR@10) on BEIR datasets, per stage."""
    import shlex

    from search_service.evaluation import EvalOptions, load_dataset, run_evaluation
    from search_service.evaluation.report import markdown, write
    from search_service.evaluation.runner import collection_names

    if reingest and reuse:
        fail("--reingest and --reuse exclude each other")
    wanted = tuple(s.strip() for s in stages.split(",") if s.strip()) if stages else None
    options = EvalOptions(reingest=reingest, reuse=reuse, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                          truncate=truncate, depth=depth, limit_queries=limit_queries, stages=wanted)
    here = click.get_current_context()
    words = ["search-service", "eval"]
    for param in here.command.params:  # the command line, for the report (global options are in settings)
        value = here.params.get(param.name)
        if value in (None, False, (), param.default):
            continue
        flag = param.opts[-1] if len(param.opts) == 1 else max(param.opts, key=len)
        words += [flag] if value is True else [w for v in (value if param.multiple else [value]) for w in (flag, str(v))]
    command = shlex.join(words)
    try:
        loaded = [load_dataset(path, split) for path in datasets]
        names = collection_names(loaded, collection)
        services = _services(ctx, with_rerankers=wanted is None or "reranked" in wanted)
        report = run_evaluation(services, list(zip(loaded, names)), options, command=command)
    except ServiceError as exc:
        fail(exc.message)
    paths = write(report, output)
    click.echo(markdown({**report, "datasets": [{k: v for k, v in d.items() if k != "runs"}
                                                  for d in report["datasets"]]}))
    click.echo(f"wrote {paths['json']} and {paths['markdown']}", err=True)
