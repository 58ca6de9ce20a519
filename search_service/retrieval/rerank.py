"""The `/v1/rerank` response (Cohere/Jina-compatible), shared by the API and `search-service rerank`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from search_service.rerankers.base import sigmoid


def rerank_response(
    reranker,
    name: str,
    query: str,
    texts: Sequence[str],
    *,
    top_n: int | None = None,
    raw_scores: bool = False,
    return_documents: bool = False,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every text scored against the query, best first: `relevance_score` is the sigmoid of the
    reranker's logit, or the logit itself with `raw_scores`. `options` go to `Reranker.rank`."""
    results = []
    for index, raw in reranker.rank(query, texts, top_n=top_n, **(options or {})):
        item: dict[str, Any] = {
            "index": index,
            "relevance_score": float(raw) if raw_scores else sigmoid(float(raw)),
        }
        if return_documents:
            item["document"] = {"text": texts[index]}
        results.append(item)
    return {
        "id": str(uuid.uuid4()),
        "model": name,
        "results": results,
        "meta": {"billed_units": {"search_units": 1}, "raw_scores": raw_scores},
    }
