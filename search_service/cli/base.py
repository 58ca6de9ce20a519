"""The `search-service` group: global options, the settings they override, shared helpers."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from search_service.env_values import DISABLED
from search_service.errors import ServiceError
from search_service.settings import Settings


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
    from search_service.logs import setup_logging

    setup_logging(verbose)
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


def load_services(ctx: Context, **kwargs):
    from search_service.services import build_services

    try:
        services = build_services(ctx.settings, **kwargs)
    except ServiceError as exc:
        fail(exc.message)
    click.get_current_context().call_on_close(services.close)
    return services
