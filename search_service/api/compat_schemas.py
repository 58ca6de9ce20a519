"""Request and response bodies of the foreign rerank protocols (`api/compat.py`).

- Cohere v2 (`POST /v2/rerank`), checked against the `cohere` SDK's v2 client (5.21.1, and the
  `relevant_spans` field of 7.3.1): request `model`, `query`, `documents` (strings), `top_n`,
  `max_tokens_per_doc`, `priority`, `relevant_spans`; response `id`, `results: [{index,
  relevance_score}]`, `meta: {api_version: {version}, billed_units: {search_units}}`.
- Hugging Face text-embeddings-inference (`POST /rerank`): request `query`, `texts`,
  `raw_scores`, `truncate`, `truncation_direction` (`right`/`left`, any case: Haystack sends
  `Left`), `return_text`; response a bare array `[{index, score, text?}]`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, field_validator

from search_service.api import responses as r
from search_service.api.schemas import (
    MAX_PASSAGE_CHARS,
    MAX_RERANK_DOCUMENTS,
    MAX_RERANK_LENGTH,
    Query,
    RerankOptions,
    RerankRequest,
    Strict,
)
from search_service.errors import InvalidRequestError

Passage = Annotated[str, StringConstraints(max_length=MAX_PASSAGE_CHARS)]
COHERE_MAX_TOKENS_PER_DOC = 4096  # Cohere's default for max_tokens_per_doc


class RelevantSpans(BaseModel):
    """Cohere's `relevant_spans` (rerank v5 models): only `mode: disabled` is accepted here."""

    model_config = ConfigDict(extra="allow", strict=True)
    mode: str


class CohereV2RerankRequest(RerankOptions):
    """Cohere's v2 rerank request; the family options of `/v1/rerank` (`prompt`, `max_length`...)
    are accepted too. `priority` is accepted and ignored: requests are batched in arrival order."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    query: Query
    documents: list[Passage] = Field(min_length=1, max_length=MAX_RERANK_DOCUMENTS)
    top_n: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    relevant_spans: RelevantSpans | None = None

    @field_validator("documents", mode="before")
    @classmethod
    def strings_only(cls, documents: Any) -> Any:
        if isinstance(documents, list):
            for index, document in enumerate(documents):
                if isinstance(document, dict):  # pydantic reports ValueErrors only, as 400s
                    raise ValueError(  # noqa: TRY004
                        f"documents[{index}] is an object: /v2/rerank takes strings only; to rank "
                        "objects on some of their fields, use /v1/rerank with rank_fields"
                    )
        return documents

    def tokens_per_doc(self) -> int:
        """Cohere's default is 4096; more than the longest pair a reranker takes changes nothing."""
        return min(self.max_tokens_per_doc or COHERE_MAX_TOKENS_PER_DOC, MAX_RERANK_LENGTH)

    def check_unsupported(self) -> None:
        if self.relevant_spans is not None and self.relevant_spans.mode != "disabled":
            raise InvalidRequestError(
                "relevant_spans is not supported by this server's rerankers; leave it out or send "
                '{"mode": "disabled"}',
                code="unsupported_option",
            )


class TeiRerankRequest(Strict):
    """text-embeddings-inference's rerank request. The reranker always truncates long pairs (as
    TEI with `--auto-truncate`): on the right, or with `truncation_direction: left` on the left."""

    query: Query
    texts: list[Passage] = Field(min_length=1, max_length=MAX_RERANK_DOCUMENTS)
    raw_scores: bool = False
    truncate: bool | None = None
    truncation_direction: Annotated[
        str, StringConstraints(pattern=r"^(?i:left|right)$", max_length=5)
    ] = "right"
    return_text: bool = False


class RerankAnyRequest(RootModel[TeiRerankRequest | RerankRequest]):
    """`POST /rerank`: TEI's body (with `texts`) or Cohere's (with `documents`, as `/v1/rerank`)."""


class CohereV2RerankResult(r.Open):
    index: int
    relevance_score: float


class CohereV2RerankResponse(r.Open):
    id: str
    model: str
    results: list[CohereV2RerankResult]
    meta: dict[str, Any]


class TeiRank(r.Open):
    index: int
    score: float
    text: str | None = None


class RerankAnyResponse(RootModel[list[TeiRank] | r.RerankResponse]):
    """TEI's bare array for a TEI body; `/v1/rerank`'s response for a Cohere body."""


def max_rerank_documents(count: int, cap: int, field: str) -> None:
    """The configured RAG_MAX_RERANK_DOCUMENTS, as `/v1/rerank` applies it."""
    if count > cap:
        raise InvalidRequestError(f"{field}: must have at most {cap} documents (got {count})")

