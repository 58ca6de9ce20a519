"""Request bodies, validated once here; limits live next to the fields they bound."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_QUERY_CHARS = 8_192
MAX_PASSAGE_CHARS = 100_000
MAX_RERANK_DOCUMENTS = 1_000
MAX_TOP_K = 100
MAX_CANDIDATES = 1_000
MAX_JSON_DOCUMENTS = 1_000
MAX_PAGE = 500

Query = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)]
CollectionName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CollectionCreate(Strict):
    name: CollectionName
    chunk_tokens: int | None = Field(default=None, ge=8, le=8192)
    chunk_overlap: int | None = Field(default=None, ge=0, le=4096)


class DocumentIn(Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    text: Annotated[str, StringConstraints(max_length=10_000_000)]
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: Annotated[str, StringConstraints(max_length=1024)] | None = None


class DocumentsCreate(Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_JSON_DOCUMENTS)


class SearchFilter(Strict):
    metadata: dict[str, Any] = Field(default_factory=dict)
    document_ids: list[Annotated[str, StringConstraints(max_length=1024)]] | None = Field(default=None, max_length=10_000)
    sources: list[Annotated[str, StringConstraints(max_length=1024)]] | None = Field(default=None, max_length=10_000)


class SearchRequest(Strict):
    collection: CollectionName
    query: Query
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    candidates: int | None = Field(default=None, ge=1, le=MAX_CANDIDATES)
    rerank: bool | None = None
    reranker: str | None = None
    filter: SearchFilter | None = None


class RerankDocument(Strict):
    text: Annotated[str, StringConstraints(max_length=MAX_PASSAGE_CHARS)]


class RerankRequest(Strict):
    model: str | None = None
    query: Query
    documents: list[Annotated[str, StringConstraints(max_length=MAX_PASSAGE_CHARS)] | RerankDocument] = Field(
        min_length=1, max_length=MAX_RERANK_DOCUMENTS
    )
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    raw_scores: bool = False

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]
