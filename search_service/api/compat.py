"""Drop-in rerank routes for the clients people already use, on v1's ranking code.

- `POST /v2/rerank`: Cohere's v2 contract (`cohere.ClientV2`, LangChain's and LlamaIndex's
  `CohereRerank`). `model` is required: a loaded reranker's name or an alias (`rerank-v3.5`...).
- `POST /rerank`: text-embeddings-inference's (Haystack's `HuggingFaceTEIRanker`), told apart
  by its body: `texts` is TEI's, answered with TEI's bare array; `documents` is Cohere's,
  answered exactly as `/v1/rerank`.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from search_service.api import parse_body, services
from search_service.api import search as v1
from search_service.api.body import current_body
from search_service.api.compat_schemas import (
    CohereV2RerankRequest,
    TeiRerankRequest,
    max_rerank_documents,
)
from search_service.retrieval.rerank import cut_to_tokens, keep_ends, rerank_response

bp = Blueprint("compat", __name__)


@bp.post("/v2/rerank")
def rerank_v2():
    """Cohere v2 rerank: every document scored against the query, best first."""
    body = parse_body(CohereV2RerankRequest)
    svc = services()
    max_rerank_documents(len(body.documents), svc.settings.max_rerank_documents, "documents")
    body.check_unsupported()
    reranker = svc.rerankers.pick(body.model)
    texts = cut_to_tokens(reranker, body.documents, body.tokens_per_doc())
    result = rerank_response(
        reranker, svc.rerankers.resolve(body.model), body.query, texts,
        top_n=body.top_n, options=body.for_reranker(reranker),
    )
    result["meta"] = {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    return result


@bp.post("/rerank")
def rerank_any():
    """TEI's rerank for a body with `texts`; `/v1/rerank` for one with `documents`."""
    peek = current_body().json  # parsed once, by the gate (api/body.py)
    if not (isinstance(peek, dict) and "texts" in peek and "documents" not in peek):
        return v1.rerank()
    body = parse_body(TeiRerankRequest)
    svc = services()
    max_rerank_documents(len(body.texts), svc.settings.max_rerank_documents, "texts")
    reranker = svc.rerankers.pick(None)
    texts = body.texts
    if body.truncation_direction.lower() == "left":
        texts = keep_ends(reranker, body.query, texts)
    result = rerank_response(
        reranker, svc.rerankers.default, body.query, texts, raw_scores=body.raw_scores
    )
    return jsonify([
        {"index": item["index"], "score": item["relevance_score"],
         **({"text": body.texts[item["index"]]} if body.return_text else {})}
        for item in result["results"]
    ])
