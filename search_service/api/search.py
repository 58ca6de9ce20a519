import uuid

from flask import Blueprint

from search_service.api import parse_body, services
from search_service.api.schemas import RerankRequest, SearchRequest
from search_service.rerankers.base import sigmoid
from search_service.retrieval.filters import document_matcher

bp = Blueprint("search", __name__, url_prefix="/v1")


@bp.post("/search")
def search():
    body = parse_body(SearchRequest)
    svc = services()
    return svc.search.search(
        body.collection,
        body.query,
        top_k=body.top_k or svc.settings.top_k,
        candidates=body.candidates or svc.settings.candidates,
        rerank=body.rerank,
        reranker=body.reranker,
        document_filter=document_matcher(**body.filter.model_dump()) if body.filter else None,
    )


@bp.post("/rerank")
def rerank():
    """Cohere/Jina-compatible rerank: scores every document against the query."""
    body = parse_body(RerankRequest)
    reranker = services().rerankers.pick(body.model)
    texts = body.texts()
    results = []
    for index, raw in reranker.rank(body.query, texts, top_n=body.top_n):
        item = {"index": index, "relevance_score": float(raw) if body.raw_scores else sigmoid(float(raw))}
        if body.return_documents:
            item["document"] = {"text": texts[index]}
        results.append(item)
    return {
        "id": str(uuid.uuid4()),
        "model": reranker.name,
        "results": results,
        "meta": {"billed_units": {"search_units": 1}, "raw_scores": body.raw_scores},
    }
