"""Run a BEIR dataset through the real service: ingestion path in, search path out, metrics.

The corpus is ingested with `IngestionPipeline.ingest` (one `SourceDocument` per line: `_id` as
external id, `title + " " + text` as text, `{"title": ...}` as metadata), so parsing, chunking,
embedding, storage and the FAISS cache are the ones users get. Each judged query goes through
`SearchPipeline.search(collection, query, top_k=depth, candidates=depth, ...)` once per stage;
chunk hits are merged into document ids, a document ranked where its best chunk is.

A stage is one row of `STAGES`: the search options it needs. Stages whose options the pipeline
does not take (`mode=` before hybrid search exists) or that need a reranker when none is loaded
are reported as skipped, with the reason. `reranked` is the reranker's order alone (rerank fusion
off, whatever RAG_RERANK_FUSION_DENSE_WEIGHT says); `reranked-fused` mixes in the dense scores
with `EvalOptions.rerank_fusion_weight` (default: that setting; it needs a weight above 0).

Every stage after the first is compared with the first (dense, when it runs), query by query on
nDCG@10: wins, losses, ties and a paired bootstrap 95 % CI of the difference (`paired`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ingestion.pipeline import SourceDocument
from ingestion.tokens import private_backend
from search_service.errors import ConflictError, InvalidRequestError
from search_service.evaluation.beir import CorpusDocument, Dataset
from search_service.evaluation.estimate import estimate_embedding
from search_service.evaluation.metrics import per_query, require_pytrec_eval
from search_service.evaluation.paired import RESAMPLES, paired_against_first
from search_service.evaluation.stages import (  # noqa: F401 - STAGE_NAMES, stage_status: the runner's API
    STAGE_NAMES,
    STAGES,
    Stage,
    fusion_weight,
    pipeline_takes_mode,
    pipeline_takes_rerank_fusion,
    select_stages,
    stage_status,
)
from search_service.store import collections as store
from search_service.store.models import Document

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 100  # chunks fetched per query: Recall@100 is measured on these
PAIRED_METRIC = "nDCG@10"


@dataclass(frozen=True)
class EvalOptions:
    reingest: bool = False
    reuse: bool = False
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None
    truncate: bool = False  # cut each document to what the embedder reads, as MTEB's model does
    depth: int = DEFAULT_DEPTH
    limit_queries: int | None = None
    stages: tuple[str, ...] | None = None
    corpus_sample: int | None = None  # judged documents + a seeded sample of the rest, this many
    seed: int = 0
    rerank_fusion_weight: float | None = None  # reranked-fused's dense weight; None: the setting's
    bootstrap_resamples: int = RESAMPLES
    progress: bool = True
    announce: Callable[[str], None] | None = None  # hears what a long step will do before it starts


@dataclass
class StageResult:
    metrics: dict[str, float]
    seconds: float
    run: dict[str, list[tuple[str, float]]] = field(repr=False)  # query -> [(doc id, score)], ranked
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)  # metric -> query -> value

    @property
    def ms_per_query(self) -> float:
        return 1000 * self.seconds / max(1, len(self.run))


def truncate_to_tokens(tokenizer, texts: list[str], max_tokens: int) -> list[str]:
    """Each text cut after its first `max_tokens` tokens (no special tokens), at a token's end.

    This is what a sentence-transformers model does to a longer input (it keeps
    `max_seq_length` tokens, special ones included), expressed as text, so the service's
    ingestion path embeds the same tokens as MTEB.
    """
    backend = private_backend(tokenizer)  # truncation off: the tokenizer may carry its own limit
    cut = []
    for start in range(0, len(texts), 256):
        batch = texts[start : start + 256]
        for text, encoding in zip(batch, backend.encode_batch(batch, add_special_tokens=False)):
            offsets = encoding.offsets
            cut.append(text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]])
    return cut


def source_documents(corpus: Sequence[CorpusDocument], texts: Sequence[str], dataset: Dataset) -> list[SourceDocument]:
    """Plain-text documents: declared `.txt` so no content sniffing can read one as another format."""
    return [
        SourceDocument(
            external_id=doc.id,
            text=text,
            filename=f"{doc.id}.txt",
            content_type="text/plain; charset=utf-8",
            source=f"{dataset.name}/corpus.jsonl",
            metadata={"title": doc.title},
        )
        for doc, text in zip(corpus, texts)
    ]


def prepare_collection(services, dataset: Dataset, name: str, options: EvalOptions) -> dict:
    """Create and fill `name` from the corpus; refuse a non-empty one unless reingest (or reuse).

    With `truncate`, documents are cut to what the embedder reads, and a new collection's chunks
    default to that size, so each document is one chunk whatever the embedder (bge-m3 too).
    """
    ingestion = services.ingestion
    truncated_to = None
    if options.truncate:
        truncated_to = services.embedder.max_seq_length - services.embedder.num_special_tokens
        if options.chunk_tokens is None:
            options = dataclasses.replace(options, chunk_tokens=truncated_to)
    with services.database.session() as session:
        collection = store.find_collection(session, name)
        documents = store.collection_counts(session, collection)[0] if collection else 0
        if collection is not None and documents and not options.reingest:
            # the same corpus with the same chunk sizes is reused without being asked to
            if options.reuse or not (_differs(collection, ingestion, options)
                                     or _stored_ids(session, collection) != _corpus_ids(dataset)):
                return _check_reusable(session, collection, dataset)
            raise ConflictError(
                f"collection {name!r} already holds {documents} documents, not exactly the corpus "
                f"of {dataset.name} with the requested chunk sizes; pass --reingest to delete and "
                "refill it from the dataset, --reuse to evaluate it as it is, or name another "
                "--collection",
                code="collection_not_empty",
            )
        if collection is not None and (options.reingest or _differs(collection, ingestion, options)):
            if not options.reingest:
                raise ConflictError(
                    f"collection {name!r} exists (empty) with chunks of {collection.chunk_tokens} "
                    f"tokens, overlap {collection.chunk_overlap}; pass --reingest to recreate it "
                    "with the requested sizes",
                    code="collection_not_empty",
                )
            collection_id = collection.id
            store.delete_collection(session, collection)
            session.flush()
            collection = None
        else:
            collection_id = None
        if collection is None:
            collection = ingestion.ensure_collection(session, name, options.chunk_tokens, options.chunk_overlap)
        chunk_tokens, chunk_overlap = collection.chunk_tokens, collection.chunk_overlap
    if collection_id is not None:
        services.indexes.forget(collection_id)

    texts = [doc.full_text for doc in dataset.corpus]
    if truncated_to is not None:
        texts = truncate_to_tokens(services.embedder.tokenizer, texts, truncated_to)
    estimate = estimate_embedding(services.embedder, texts, chunk_tokens, chunk_overlap)
    if options.announce:
        options.announce(estimate.message())
    started = time.perf_counter()
    results = ingestion.ingest(name, source_documents(dataset.corpus, texts, dataset), progress=options.progress)
    seconds = time.perf_counter() - started
    failed = [r for r in results if r.status == "failed"]
    for result in failed[:5]:
        log.warning("document %s failed: %s", result.external_id, result.error)
    return {
        "action": "reingested" if options.reingest and collection_id is not None else "created",
        "documents": len(results) - len(failed),
        "failed": len(failed),
        "chunks": sum(r.chunks for r in results),
        "chunk_tokens": chunk_tokens,
        "chunk_overlap": chunk_overlap,
        "truncated_to_tokens": truncated_to,
        "seconds": round(seconds, 2),
        "estimated_seconds": round(estimate.seconds, 2),
    }


def _differs(collection, ingestion, options: EvalOptions) -> bool:
    if options.chunk_tokens is None and options.chunk_overlap is None:
        return False
    wanted = ingestion.chunk_settings(options.chunk_tokens, options.chunk_overlap)
    return wanted != (collection.chunk_tokens, collection.chunk_overlap)


def _stored_ids(session, collection) -> set[str]:
    from sqlalchemy import select

    return set(session.scalars(select(Document.external_id).where(Document.collection_id == collection.id)))


def _corpus_ids(dataset: Dataset) -> set[str]:
    return {doc.id for doc in dataset.corpus}


def _check_reusable(session, collection, dataset: Dataset) -> dict:
    stored, wanted = _stored_ids(session, collection), _corpus_ids(dataset)
    if stored != wanted:
        raise ConflictError(
            f"collection {collection.name!r} does not hold exactly the corpus of {dataset.name} "
            f"({len(stored & wanted)} of {len(wanted)} documents, {len(stored - wanted)} others); "
            "pass --reingest instead of --reuse",
            code="collection_not_empty",
        )
    documents, chunks = store.collection_counts(session, collection)
    return {
        "action": "reused",
        "documents": documents,
        "failed": 0,
        "chunks": chunks,
        "chunk_tokens": collection.chunk_tokens,
        "chunk_overlap": collection.chunk_overlap,
        "truncated_to_tokens": None,
        "seconds": 0.0,
    }


def merge_by_document(results: list[dict]) -> list[tuple[str, float]]:
    """Chunk results, best first, -> [(document id, its best chunk's score)] in the same order."""
    merged: dict[str, float] = {}
    for result in results:
        merged.setdefault(result["document_id"], float(result["score"]))
    return list(merged.items())


def run_stage(services, dataset: Dataset, collection: str, stage: Stage, options: EvalOptions) -> StageResult:
    search_options = stage.search_options(
        pipeline_takes_mode(services.search), fusion_weight(services, options.rerank_fusion_weight)
    )
    ranked: dict[str, list[tuple[str, float]]] = {}
    started = time.perf_counter()
    for query_id, text in tqdm(dataset.queries.items(), desc=f"{dataset.name} {stage.name}", unit="query",
                               disable=not options.progress):
        response = services.search.search(
            collection, text, top_k=options.depth, candidates=options.depth, **search_options
        )
        ranked[query_id] = merge_by_document(response["results"])
    seconds = time.perf_counter() - started
    # trec_eval orders by score; the pipeline's order is the truth (scores of a fused or
    # reranked list may tie or be on another scale), so metrics see a score from the rank.
    run = {q: {doc: float(len(docs) - i) for i, (doc, _) in enumerate(docs)} for q, docs in ranked.items()}
    values = per_query(dataset.qrels, run)
    means = {name: float(np.mean(list(v.values()))) if v else 0.0 for name, v in values.items()}
    return StageResult(means, seconds, ranked, values)


def evaluate_dataset(services, dataset: Dataset, collection: str, options: EvalOptions) -> dict:
    """Ingest if needed, run each stage, and return the dataset's report section (JSON-ready)."""
    stages, skipped = select_stages(services, options.stages, options.rerank_fusion_weight)
    dataset = dataset.limited(options.limit_queries).sampled(options.corpus_sample, options.seed)
    if dataset.sampled_from is not None and options.announce:
        options.announce(
            f"{dataset.name}: a sample of {len(dataset.corpus):,} of its {dataset.sampled_from:,} "
            "documents (every judged one kept); the figures are not comparable with published ones"
        )
    ingestion = prepare_collection(services, dataset, collection, options)
    results = {stage.name: run_stage(services, dataset, collection, stage, options) for stage in stages}
    paired = paired_against_first({name: r.per_query[PAIRED_METRIC] for name, r in results.items()},
                                  resamples=options.bootstrap_resamples, seed=options.seed)
    weight = fusion_weight(services, options.rerank_fusion_weight)
    return {
        "dataset": dataset.name,
        "path": str(dataset.path),
        "split": dataset.split,
        "collection": collection,
        "corpus_documents": len(dataset.corpus),
        "corpus_sampled_from": dataset.sampled_from,
        "queries": len(dataset.queries),
        "depth": options.depth,
        "ingestion": ingestion,
        "stages": {
            name: {
                "metrics": {k: round(v, 5) for k, v in result.metrics.items()},
                "seconds": round(result.seconds, 2),
                "ms_per_query": round(result.ms_per_query, 1),
                **({"rerank_fusion_dense_weight": weight} if name == "reranked-fused" else {}),
                **({"paired": {"metric": PAIRED_METRIC, **paired[name]}} if name in paired else {}),
            }
            for name, result in results.items()
        },
        "skipped": skipped,
        "runs": {name: result.run for name, result in results.items()},
    }


def run_evaluation(services, datasets: Sequence[tuple[Dataset, str]], options: EvalOptions, *, command: str = "") -> dict:
    """Evaluate each (dataset, collection name) pair; the report that `report.write` saves."""
    from datetime import UTC, datetime

    require_pytrec_eval()  # before any ingestion: fail fast when the metrics cannot be computed
    settings = services.settings
    return {
        "version": 1,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "command": command,
        "settings": {
            "embedder_model": getattr(services.embedder, "model_id", settings.embedder_model),
            "reranker_model": services.search.rerankers.default,
            "device": settings.device,
            "database": settings.database_url.split(":", 1)[0],
        },
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in ("progress", "announce")},
        "datasets": [evaluate_dataset(services, dataset, name, options) for dataset, name in datasets],
    }


def collection_names(datasets: Sequence[Dataset], name: str) -> list[str]:
    """`name` for one dataset; `name-<dataset folder>` for each of several (folders must differ)."""
    if len(datasets) == 1:
        return [name]
    names = [f"{name}-{dataset.name}" for dataset in datasets]
    if len(set(names)) != len(names):
        raise InvalidRequestError("datasets in one run need different folder names", code="invalid_dataset")
    for each in names:
        store.validate_collection_name(each)
    return names
