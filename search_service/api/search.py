from flask import Blueprint, g

from search_service.api import parse_body, services
from search_service.api.schemas import RerankRequest, SearchRequest
from search_service.errors import InvalidRequestError
from search_service.retrieval.filters import document_matcher
from search_service.retrieval.rerank import cut_to_tokens, rerank_response

bp = Blueprint("search", __name__, url_prefix="/v1")


@bp.post("/search")
def search():
    body = parse_body(SearchRequest)
    svc = services()
    _check_rerank_fusion(body, svc)
    result = svc.search.search(
        body.collection,
        body.query,
        top_k=body.top_k or svc.settings.top_k,
        candidates=body.candidates or svc.settings.candidates,
        rerank=body.rerank,
        reranker=body.reranker,
        document_filter=document_matcher(**body.filter.model_dump()) if body.filter else None,
        rerank_options=_search_rerank_options(body, svc),
        rerank_fallback=body.rerank_fallback,
        **body.search_options(),
    )
    g.search_result = result  # the metrics hook reads its timings without decoding the response
    return result


def _check_rerank_fusion(body: SearchRequest, svc) -> None:
    """`rerank_fusion` mixes scores into a reranked order: it needs a search that reranks."""
    if body.rerank_fusion is None:
        return
    if body.rerank is False:
        raise InvalidRequestError("rerank_fusion needs reranking; drop it or send rerank: true")
    if not svc.rerankers.rerankers:
        raise InvalidRequestError(
            "rerank_fusion needs a reranker and none is loaded (RAG_RERANKER_MODEL=none); drop it",
            code="reranker_not_configured",
        )


def _search_rerank_options(body: SearchRequest, svc) -> dict | None:
    """`rerank_options` checked against the reranker the search will use."""
    if body.rerank_options is None or not body.rerank_options.given():
        return None
    if body.rerank is False:
        raise InvalidRequestError("rerank_options need reranking; drop them or send rerank: true")
    if not svc.rerankers.rerankers:
        raise InvalidRequestError(
            "rerank_options need a reranker and none is loaded (RAG_RERANKER_MODEL=none); drop them",
            code="reranker_not_configured",
        )
    return body.rerank_options.for_reranker(svc.rerankers.pick(body.reranker))


@bp.post("/rerank")
def rerank():
    """Cohere/Jina-compatible rerank: scores every document against the query."""
    body = parse_body(RerankRequest)
    rerankers = services().rerankers
    reranker = rerankers.pick(body.model)
    texts = body.texts()
    if body.max_tokens_per_doc is not None:
        texts = cut_to_tokens(reranker, texts, body.max_tokens_per_doc)
    return rerank_response(
        reranker,
        rerankers.resolve(body.model),  # the model used, also when asked by alias or path
        body.query,
        texts,
        top_n=body.top_n,
        raw_scores=body.raw_scores,
        return_documents=body.return_documents,
        documents=body.documents_as_sent() if body.return_documents else None,
        options=body.for_reranker(reranker),
    )


@bp.get("/rerankers")
def rerankers():
    """The loaded rerankers by name, with the family options each accepts."""
    loaded = services().rerankers
    return {
        "default": loaded.default,
        "rerankers": [
            {
                "name": name,
                "family": reranker.family,
                "options": sorted(reranker.options),
                "max_length": reranker.max_supported_length,
                "aliases": sorted(a for a, target in loaded.aliases.items() if target == name),
            }
            for name, reranker in loaded.rerankers.items()
        ],
    }
