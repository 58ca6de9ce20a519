"""Everything a process needs, built once from the settings: database, models, indexes, pipelines."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from ingestion.pipeline import IngestionPipeline
from ingestion.prepare import ParseLimits
from search_service.embedding import load_embedder
from search_service.errors import ConfigurationError
from search_service.model_names import ModelNames, build_names, display_name
from search_service.retrieval.analyzer import Analyzer
from search_service.retrieval.pipeline import RerankerSet, SearchPipeline
from search_service.retrieval.rerank_cache import RerankCache
from search_service.retrieval.sparse import SparseIndexManager
from search_service.retrieval.sparse_head import SparseHead
from search_service.retrieval.vector_store import VectorStores
from search_service.settings import Settings
from search_service.store.db import Database, require_migrated
from search_service.store.vectors import VectorLayout, pgvector_ready

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    database: Database
    embedder: object
    rerankers: RerankerSet
    indexes: VectorStores  # each collection's vector backend (faiss, pgvector)
    search: SearchPipeline
    ingestion: IngestionPipeline
    schedulers: list = field(default_factory=list)  # one BatchScheduler per loaded reranker
    names: ModelNames | None = None  # display names and aliases (model_names.py)
    ingest_workers: object | None = None  # serve --ingest-workers: ingestion.supervision.WorkerThreads

    def close(self) -> None:
        for scheduler in self.schedulers:
            scheduler.close()
        self.database.dispose()


@dataclass(frozen=True)
class RerankerSpec:
    """One reranker to load: the name requests use, where it comes from, the setting naming it."""

    name: str
    source: str
    family: str | None
    setting: str
    # load_reranker options every reranker shares (RAG_RERANKER_RUNTIME, RAG_RERANKER_DTYPE...)
    options: tuple[tuple[str, object], ...] = ()


def reranker_load_options(settings: Settings) -> tuple[tuple[str, object], ...]:
    """The settings' non-default load options, as `RerankerSpec.options`."""
    options: list[tuple[str, object]] = []
    if settings.reranker_dtype != "auto":
        options.append(("dtype", settings.reranker_dtype))
    if settings.reranker_runtime != "torch":
        options.append(("runtime", settings.reranker_runtime))
        if settings.onnx_cache_dir is not None:
            options.append(("onnx_cache_dir", str(settings.onnx_cache_dir)))
    return tuple(options)


FAMILY_SUFFIX = "#family="


def split_family(source: str, setting: str = "RAG_RERANKERS") -> tuple[str, str | None]:
    """`path_or_id#family=<family>` -> (path_or_id, family); without the suffix, (source, None).

    `<family>` is a family name (encoder, llm, layerwise, lightweight) or a dotted path to a
    `Reranker` subclass, checked when the reranker loads. Hub ids cannot contain `#`.
    """
    path, sep, family = source.rpartition(FAMILY_SUFFIX)
    if not sep:
        return source, None
    path, family = path.strip(), family.strip()
    if not path or not family:
        raise ConfigurationError(
            f"{setting}: expected path_or_id{FAMILY_SUFFIX}<family>, got {source!r}"
        )
    return path, family


def reranker_specs(settings: Settings) -> tuple[list[RerankerSpec], str | None]:
    """The rerankers the settings ask for, and the default's name.

    RAG_RERANKERS entries are loaded under their names; an entry forces its family with a
    `#family=<name>` suffix (`gemma=/models/gemma#family=llm`, see `split_family`).
    RAG_RERANKER_MODEL is the default: the name of an RAG_RERANKERS entry, or an id/path loaded
    under that id; when it is none, the first entry is the default. RAG_RERANKER_FAMILY applies to
    the default only (an entry's own `#family=` must agree with it).
    """
    options = reranker_load_options(settings)
    specs = []
    for name, raw in settings.rerankers:
        setting = f"RAG_RERANKERS ({name}=...)"
        source, family = split_family(raw, setting)
        specs.append(RerankerSpec(name, source, family, setting, options))
    default = settings.reranker_model
    if default is None and specs:
        default = specs[0].name
    if default is None:
        return specs, None
    for index, spec in enumerate(specs):
        if spec.name == default:
            family = settings.reranker_family
            if spec.family is not None and family is not None and spec.family != family:
                raise ConfigurationError(
                    f"{spec.setting}: #family={spec.family} contradicts "
                    f"RAG_RERANKER_FAMILY={family} for the default reranker; set one of them"
                )
            specs[index] = replace(spec, family=spec.family or family)
            return specs, default
    # Loaded from an id or path: named by its display name (a path never shows in a response;
    # requests may still send the id or path, see RerankerSet.resolve).
    name = display_name(default)
    if any(spec.name == name for spec in specs):
        name = default
    specs.insert(
        0, RerankerSpec(name, default, settings.reranker_family, "RAG_RERANKER_MODEL", options)
    )
    return specs, name


def pick_reranker_spec(
    settings: Settings, model: str | None = None, family: str | None = None
) -> RerankerSpec | None:
    """The spec for `model`: a configured name, else an id or path; None picks the default."""
    specs, default = reranker_specs(settings)
    wanted = default if model is None else model
    for spec in specs:
        if wanted in (spec.name, spec.source):
            return spec if family is None else replace(spec, family=family)
    if model is None:
        return None
    source, suffix_family = split_family(model, "--model")
    return RerankerSpec(
        display_name(source), source, family or suffix_family, "--model",
        reranker_load_options(settings),
    )


def load_reranker_spec(spec: RerankerSpec, device: str):
    """Load one spec; a load or configuration error names the setting that asked for it."""
    from search_service.errors import ModelLoadError
    from search_service.rerankers import load_reranker

    try:
        return load_reranker(spec.source, device=device, family=spec.family, **dict(spec.options))
    except (ModelLoadError, ConfigurationError) as error:
        message = f"{spec.setting}: {error.message}"
        if isinstance(error, ModelLoadError) and not Path(spec.source).exists():
            message += (
                f" Download it on a connected machine (`hf download {spec.source}`) and copy the "
                f"Hugging Face cache, or set {spec.setting} to a local directory that holds it."
            )
        raise type(error)(message) from error


def load_rerankers(settings: Settings) -> RerankerSet:
    """Every configured reranker, each checkpoint loaded once even when several names share it."""
    specs, default = reranker_specs(settings)
    loaded: dict[tuple[str, str | None], object] = {}
    rerankers = {}
    for spec in specs:
        key = (spec.source, spec.family)
        if key not in loaded:
            loaded[key] = load_reranker_spec(spec, settings.device)
            if settings.batch_token_budget:  # batches within one call follow it too
                loaded[key].token_budget = settings.batch_token_budget
            loaded[key].use_token_cache(settings.rerank_token_cache)
        rerankers[spec.name] = loaded[key]
    if len(rerankers) > 1:
        log.info("rerankers loaded: %s (default %s)", ", ".join(rerankers), default)
    return RerankerSet(rerankers, default)


def batched_rerankers(settings: Settings, rerankers: RerankerSet) -> tuple[RerankerSet, list]:
    """With RAG_BATCHING=on, each distinct reranker gets a scheduler that batches the pairs of
    concurrent requests; the set holds copies that score through it (the given models untouched)."""
    if settings.batching != "on" or not rerankers.rerankers:
        return rerankers, []
    from search_service.rerankers import Reranker
    from search_service.rerankers.batching.scheduler import BatchScheduler

    copies: dict[int, object] = {}
    schedulers = []
    for name, reranker in rerankers.rerankers.items():
        if id(reranker) in copies:
            continue
        if not isinstance(reranker, Reranker):  # a stand-in: as it is
            copies[id(reranker)] = reranker
        else:
            scheduler = BatchScheduler(
                reranker,
                max_delay_ms=settings.batch_max_delay_ms,
                token_budget=settings.batch_token_budget,
                max_batch_size=settings.batch_max_size,
                pipeline=settings.batch_pipeline == "on",
                queue_max=settings.rerank_queue_max,
                name=name,
            )
            schedulers.append(scheduler)
            copies[id(reranker)] = reranker.with_scheduler(scheduler)
    batched = {name: copies[id(reranker)] for name, reranker in rerankers.rerankers.items()}
    return RerankerSet(batched, rerankers.default), schedulers


def build_services(
    settings: Settings,
    *,
    embedder=None,
    rerankers: RerankerSet | None = None,
    with_rerankers: bool = True,
) -> Services:
    """Check the schema first (cheap, clear error), then load the models (slow)."""
    database = Database(settings.database_url, new_collections=VectorLayout.from_settings(settings))
    try:
        require_migrated(database)
        if settings.vector_backend == "pgvector":
            with database.session() as session:
                if not pgvector_ready(session):
                    raise ConfigurationError(
                        "RAG_VECTOR_BACKEND=pgvector needs PostgreSQL with the pgvector schema: "
                        "run `RAG_VECTOR_BACKEND=pgvector search-service migrate` first"
                    )
        if embedder is None:
            embedder = load_embedder(
                settings.embedder_model,
                settings.device,
                settings.embed_batch_size,
                settings.query_cache_size,
            )
        sparse_head = SparseHead.for_embedder(embedder)  # bge-m3 lexical weights, when present
        if rerankers is None:
            rerankers = load_rerankers(settings) if with_rerankers else RerankerSet({}, None)
    except BaseException:
        database.dispose()
        raise
    indexes = VectorStores(settings)
    rerankers, schedulers = batched_rerankers(settings, rerankers)
    try:
        names = build_names(settings, embedder, list(rerankers.rerankers), rerankers.default)
    except BaseException:
        for scheduler in schedulers:
            scheduler.close()
        database.dispose()
        raise
    rerankers = replace(rerankers, aliases=names.rerank_aliases)
    return Services(
        settings=settings,
        database=database,
        embedder=embedder,
        rerankers=rerankers,
        indexes=indexes,
        search=SearchPipeline(
            database,
            embedder,
            indexes,
            rerankers,
            sparse=SparseIndexManager(sparse_head, Analyzer(settings.sparse_language)),
            rerank_cache=RerankCache(settings.rerank_cache_size),
            default_mode=settings.search_mode,
            default_rerank_fusion_weight=settings.rerank_fusion_dense_weight,
            context_tokenizers_allowed=settings.context_tokenizers,
        ),
        ingestion=IngestionPipeline(
            database,
            embedder,
            indexes,
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
            parse_limits=ParseLimits(settings.parse_timeout_seconds, settings.parse_memory_bytes),
            sparse_head=sparse_head,
        ),
        schedulers=schedulers,
        names=names,
    )
