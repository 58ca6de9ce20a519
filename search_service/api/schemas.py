"""Request bodies, validated once here; limits live next to the fields they bound."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from search_service.errors import InvalidRequestError

MAX_QUERY_CHARS = 8_192
MAX_PASSAGE_CHARS = 100_000
MAX_RERANK_DOCUMENTS = 1_000
MAX_TOP_K = 100
MAX_CANDIDATES = 1_000
MAX_JSON_DOCUMENTS = 1_000
MAX_PAGE = 500
MAX_PROMPT_CHARS = 2_000
MAX_RERANK_LENGTH = 8_192  # bge-reranker-v2-m3's limit; a model's own limit is checked on top
MAX_LAYERS = 8



def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("the query is empty or only whitespace")
    return value


# A query must hold something to search for: whitespace only is a 400 (`pattern` tells clients).
Query = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS),
    AfterValidator(_not_blank),
    Field(json_schema_extra={"pattern": r"\S"}),
]
CollectionName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CollectionCreate(Strict):
    name: str  # the identifier rule (`store.collections.validate_collection_name`): one 400 slug
    chunk_tokens: int | None = Field(default=None, ge=8, le=8192)
    chunk_overlap: int | None = Field(default=None, ge=0, le=4096)


class DocumentIn(Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    text: Annotated[str, StringConstraints(max_length=10_000_000)]
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: Annotated[str, StringConstraints(max_length=1024)] | None = None
    # How to read `text` (never detected from it): plain text, markdown headings, or HTML.
    format: Literal["text", "markdown", "html"] = "text"


class DocumentsCreate(Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_JSON_DOCUMENTS)


class SearchFilter(Strict):
    metadata: dict[str, Any] = Field(default_factory=dict)
    document_ids: list[Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, max_length=10_000
    )
    sources: list[Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, max_length=10_000
    )


Layer = Annotated[int, Field(ge=0, le=1_000)]
Layers = Annotated[list[Layer], Field(min_length=1, max_length=MAX_LAYERS)]


class RerankOptions(Strict):
    """Per-request reranker options. Bounds that need the model are checked by its family
    (`Reranker.check_options`, through `for_reranker`)."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)] | None = (
        None
    )
    cutoff_layers: Layer | Layers | None = None
    compress_ratio: Literal[1, 2, 4, 8] | None = None
    compress_layers: Layers | None = None
    max_length: int | None = Field(default=None, ge=1, le=MAX_RERANK_LENGTH)
    # Tokens of the query kept (default 3/4 of max_length); at most the request's max_length.
    query_max_length: int | None = Field(default=None, ge=1, le=MAX_RERANK_LENGTH)

    def given(self) -> dict[str, Any]:
        return self.model_dump(include=set(RerankOptions.model_fields), exclude_none=True)

    def for_reranker(self, reranker) -> dict[str, Any]:
        """The options as `Reranker.score` keywords, checked by the chosen model's family (400s)."""
        return reranker.check_options(self.given())


def _invalid(message: str):
    raise InvalidRequestError(message)


MAX_CONTEXT_TOKENS = 131_072


class FusionOptions(Strict):
    """How a hybrid search fuses its dense and sparse lists (`retrieval.fusion`)."""

    method: Literal["rrf", "weighted"] = "rrf"
    k: int = Field(default=60, ge=1, le=10_000)  # the RRF constant
    dense_weight: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False)  # weighted only


class RerankFusionOptions(Strict):
    """How a reranked search mixes in the first stage's scores (`retrieval.fusion`)."""

    dense_weight: float = Field(
        ge=0.0, le=1.0, allow_inf_nan=False,
        description="weight of the first-stage score's z-score against the reranker's "
        "(1 - dense_weight), both over the query's candidates; 0: the reranker's order alone",
    )


class SearchOptions(Strict):
    """/v1/search's retrieval mode, fusion, score threshold and LLM-context options."""

    mode: Literal["dense", "sparse", "hybrid"] | None = None
    sparse_method: Literal["auto", "bm25", "lexical"] | None = None
    fusion: FusionOptions | None = None
    rerank_fusion: RerankFusionOptions | None = Field(
        default=None,
        description="mix the first stage's scores into the reranked order; default "
        "RAG_RERANK_FUSION_DENSE_WEIGHT (0: none)",
    )
    score_threshold: float | None = Field(default=None, allow_inf_nan=False)
    context_budget_tokens: int | None = Field(default=None, ge=1, le=MAX_CONTEXT_TOKENS)
    context_tokenizer: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None

    def search_options(self) -> dict[str, Any]:
        """Keywords for `SearchPipeline.search`."""
        if self.context_tokenizer is not None and self.context_budget_tokens is None:
            _invalid("context_tokenizer needs context_budget_tokens")
        options = self.model_dump(
            include={
                "mode",
                "sparse_method",
                "score_threshold",
                "context_budget_tokens",
                "context_tokenizer",
            }
        )
        options["fusion"] = self.fusion.model_dump() if self.fusion is not None else None
        options["rerank_fusion"] = self.rerank_fusion.dense_weight if self.rerank_fusion is not None else None
        return options


class SearchRequest(SearchOptions):
    collection: CollectionName
    query: Query
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    candidates: int | None = Field(default=None, ge=1, le=MAX_CANDIDATES)
    rerank: bool | None = Field(
        default=None,
        description="null (default): rerank when a reranker is loaded; true: rerank (400 "
        "`reranker_not_configured` without one); false: the candidates' own order",
    )
    reranker: str | None = None
    rerank_options: RerankOptions | None = None
    rerank_fallback: Literal["none", "dense"] | None = Field(
        default=None,
        description="none (default): a remote reranker that gives no scores is an error (503 "
        "`reranker_unavailable`, 502 `reranker_remote_error`); dense: answer with the candidates "
        "in retrieval order instead, `reranked: false`, and `rerank_fallback` says so",
    )
    filter: SearchFilter | None = None


class RerankDocument(BaseModel):
    """A document object (Cohere v1): ranked by its `text`, or by the fields `rank_fields` names;
    its other fields are kept and come back with `return_documents`."""

    model_config = ConfigDict(extra="allow", strict=True)
    text: Annotated[str, StringConstraints(max_length=MAX_PASSAGE_CHARS)] | None = None


FieldName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RerankRequest(RerankOptions):
    model: str | None = None
    query: Query
    documents: list[
        Annotated[str, StringConstraints(max_length=MAX_PASSAGE_CHARS)] | RerankDocument
    ] = Field(min_length=1, max_length=MAX_RERANK_DOCUMENTS)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    raw_scores: bool = False
    # Cohere's: the fields of document objects to rank on, in order (v1), and a cap on each
    # document's tokens (v2). max_chunks_per_doc (v1) is refused: see `texts`.
    rank_fields: list[FieldName] | None = Field(default=None, min_length=1, max_length=32)
    max_tokens_per_doc: int | None = Field(default=None, ge=1, le=MAX_RERANK_LENGTH)
    max_chunks_per_doc: int | None = None

    def texts(self) -> list[str]:
        """The text each document is ranked on: a string as it is; an object's `text`, or with
        `rank_fields` the one field's value, or several fields as `name: value` lines."""
        if self.max_chunks_per_doc is not None:
            _invalid(
                "max_chunks_per_doc is not supported: a document is cut to the reranker's "
                "max_length (or max_tokens_per_doc); split long documents and rerank the parts"
            )
        fields = self.rank_fields or ["text"]
        texts = []
        for index, values in enumerate(self.documents_as_sent()):
            missing = [name for name in fields if not isinstance(values.get(name), str)]
            if missing:
                _invalid(
                    f"documents[{index}] has no string field {missing[0]!r} to rank on"
                    + ("" if self.rank_fields else " (an object needs `text`, or set rank_fields)")
                )
            if len(fields) == 1:
                texts.append(values[fields[0]])
            else:
                texts.append("\n".join(f"{name}: {values[name]}" for name in fields))
            if len(texts[-1]) > MAX_PASSAGE_CHARS:
                _invalid(f"documents[{index}] is longer than {MAX_PASSAGE_CHARS} characters")
        return texts

    def documents_as_sent(self) -> list[dict[str, Any]]:
        """Each document as given: an object's fields, a string as `{"text": ...}`."""
        return [
            {"text": document}
            if isinstance(document, str)
            else document.model_dump(exclude_unset=True)
            for document in self.documents
        ]
