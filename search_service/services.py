"""Everything a process needs, built once from the settings: database, models, indexes, pipelines."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ingestion.pipeline import IngestionPipeline
from search_service.embedding import load_embedder
from search_service.retrieval.index import IndexManager
from search_service.retrieval.pipeline import RerankerSet, SearchPipeline
from search_service.settings import Settings
from search_service.store.db import Database, require_migrated

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    database: Database
    embedder: object
    rerankers: RerankerSet
    indexes: IndexManager
    search: SearchPipeline
    ingestion: IngestionPipeline

    def close(self) -> None:
        self.database.dispose()


def load_rerankers(settings: Settings) -> RerankerSet:
    if settings.reranker_model is None:
        return RerankerSet({}, None)
    from search_service.rerankers import load_reranker

    reranker = load_reranker(settings.reranker_model, device=settings.device, family=settings.reranker_family)
    return RerankerSet({settings.reranker_model: reranker}, settings.reranker_model)


def build_services(settings: Settings, *, embedder=None, rerankers: RerankerSet | None = None, with_rerankers: bool = True) -> Services:
    """Check the schema first (cheap, clear error), then load the models (slow)."""
    database = Database(settings.database_url)
    try:
        require_migrated(database)
        if embedder is None:
            embedder = load_embedder(settings.embedder_model, settings.device, settings.embed_batch_size)
        if rerankers is None:
            rerankers = load_rerankers(settings) if with_rerankers else RerankerSet({}, None)
    except BaseException:
        database.dispose()
        raise
    indexes = IndexManager(settings.index_dir)
    return Services(
        settings=settings,
        database=database,
        embedder=embedder,
        rerankers=rerankers,
        indexes=indexes,
        search=SearchPipeline(database, embedder, indexes, rerankers),
        ingestion=IngestionPipeline(
            database, embedder, indexes, chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap
        ),
    )
