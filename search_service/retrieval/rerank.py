"""The `/v1/rerank` response (Cohere/Jina-compatible), shared by the API and `search-service rerank`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from search_service.rerankers.base import sigmoid


def cut_to_tokens(reranker, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Each text cut after its first `max_tokens` tokens of the reranker's tokenizer (Cohere's
    `max_tokens_per_doc`); a shorter text is kept whole."""
    encodings = reranker.text_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [
        text if len(encoding.offsets) <= max_tokens else text[: encoding.offsets[max_tokens - 1][1]]
        for text, encoding in zip(texts, encodings, strict=True)
    ]


def rerank_response(
    reranker,
    name: str,
    query: str,
    texts: Sequence[str],
    *,
    top_n: int | None = None,
    raw_scores: bool = False,
    return_documents: bool = False,
    documents: Sequence[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every text scored against the query, best first: `relevance_score` is the sigmoid of the
    reranker's logit, or the logit itself with `raw_scores`. `options` go to `Reranker.rank`.
    With `return_documents`, each result carries `documents[index]` (default: `{"text": text}`)."""
    results = []
    for index, raw in reranker.rank(query, texts, top_n=top_n, **(options or {})):
        item: dict[str, Any] = {
            "index": index,
            "relevance_score": float(raw) if raw_scores else sigmoid(float(raw)),
        }
        if return_documents:
            item["document"] = documents[index] if documents else {"text": texts[index]}
        results.append(item)
    return {
        "id": str(uuid.uuid4()),
        "model": name,
        "results": results,
        "meta": {"billed_units": {"search_units": 1}, "raw_scores": raw_scores},
    }
