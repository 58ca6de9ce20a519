"""Response models: what the views return, for the OpenAPI document (`api/openapi.py`).

They describe the documented fields; `extra="allow"` keeps a field another change adds from
breaking clients that validate against the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(Open):
    code: str
    message: str


class Error(Open):
    error: ErrorDetail


class Health(Open):
    status: str
    auth_required: bool


class IngestWorkers(Open):
    configured: int
    alive: int
    restarts: int


class Ready(Open):
    status: Literal["ready", "unavailable"]
    database: bool
    embedder: str
    rerankers: list[str]
    ingest_workers: IngestWorkers | None = None  # serve --ingest-workers N


class Collection(Open):
    name: str
    embedder_model: str
    dimension: int
    chunk_tokens: int
    chunk_overlap: int
    documents: int
    chunks: int
    created_at: str


class CollectionList(Open):
    collections: list[Collection]


class Chunk(Open):
    chunk_id: int
    ordinal: int
    text: str
    start: int
    end: int
    token_count: int
    metadata: dict[str, Any]


class Document(Open):
    document_id: str
    source: str | None
    content_hash: str
    metadata: dict[str, Any]
    status: str
    created_at: str
    updated_at: str
    chunks: list[Chunk] | None = None


class DocumentList(Open):
    documents: list[Document]
    total: int
    limit: int
    offset: int


class JobAccepted(Open):
    job_id: str
    status: str
    collection: str


class FailedDocument(Open):
    id: str
    code: str
    message: str


class JobDocuments(Open):
    """What a finished job did, by document id."""

    created: list[str]
    replaced: list[str]
    unchanged: list[str]
    failed: list[FailedDocument]


class Job(Open):
    job_id: str
    status: Literal["pending", "parsing", "embedding", "indexed", "indexed_with_errors", "failed", "cancelled"]
    collection: str | None
    kind: str
    filename: str | None
    document_id: str | None
    error: str | None
    error_code: str | None = None
    attempts: int
    request_id: str | None = None
    documents: JobDocuments | None = None
    hint: str | None = None  # a pending job no worker has claimed for RAG_JOB_UNCLAIMED_WARN_S
    result: dict[str, Any]
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class JobList(Open):
    jobs: list[Job]
    total: int
    limit: int
    offset: int


class SearchResult(Open):
    rank: int | None = None
    chunk_id: int | None = None
    document_id: str
    text: str
    score: float
    start: int
    end: int
    dense_rank: int | None = None
    dense_score: float | None = None
    rerank_score: float | None = None
    # with rerank fusion: (1 - w) * z(rerank_score) + w * z(first-stage score), also `score`
    rerank_fusion_score: float | None = None


class RerankFusion(Open):
    """What a reranked search fused (null when it did not: no reranking, or dense_weight 0)."""

    dense_weight: float
    rerank_weight: float
    first_stage_score: Literal["dense_score", "sparse_score", "fusion_score"]
    normalization: Literal["zscore"]


class RerankFallback(Open):
    """Set when a search asked for `rerank_fallback: "dense"` and the remote reranker gave no
    scores: the results are in retrieval order; `code`/`message` are the error it would have had."""

    used: Literal["dense"]
    code: str
    message: str


class SearchResponse(Open):
    collection: str
    query: str
    mode: str | None = None
    results: list[SearchResult]
    reranked: bool
    reranker: str | None
    rerank_fusion: RerankFusion | None = None
    rerank_fallback: RerankFallback | None = None
    context: dict[str, Any] | None = None
    cache: dict[str, Any]
    timings_ms: dict[str, float]


class RerankDocumentOut(Open):
    """The document as it was sent (a string comes back as `{"text": ...}`)."""

    text: str | None = None


class RerankResult(Open):
    index: int
    relevance_score: float
    document: RerankDocumentOut | None = None


class RerankResponse(Open):
    id: str
    model: str | None
    results: list[RerankResult]
    meta: dict[str, Any]


class RerankerInfo(Open):
    name: str
    family: str
    options: list[str]
    max_length: int | None


class RerankerList(Open):
    default: str | None
    rerankers: list[RerankerInfo]


class Embedding(Open):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(Open):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: dict[str, int]


class ModelInfo(Open):
    id: str
    object: Literal["model"]
    type: Literal["embedding", "reranker"]
    family: str
    device: str


class ModelList(Open):
    object: Literal["list"]
    data: list[ModelInfo]
