"""The `/v1/rerank` response (Cohere/Jina-compatible), shared by the API and `search-service rerank`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from search_service.rerankers.base import sigmoid

# No tokenizer gives more tokens than this per character (byte fallback: at most 4 UTF-8 bytes,
# plus a word-start marker), so a text of at most max_tokens / 5 characters needs no tokenizing.
MAX_TOKENS_PER_CHAR = 5


def cut_to_tokens(reranker, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Each text cut after its first `max_tokens` tokens of the reranker's tokenizer (Cohere's
    `max_tokens_per_doc`); a shorter text is kept whole. A reranker without a tokenizer here (a
    remote engine) gets the texts whole and truncates them itself."""
    if getattr(reranker, "text_tokenizer", None) is None:
        return list(texts)
    long = [i for i, text in enumerate(texts) if len(text) * MAX_TOKENS_PER_CHAR > max_tokens]
    cut = list(texts)
    if not long:
        return cut
    encodings = reranker.text_tokenizer.encode_batch([texts[i] for i in long], add_special_tokens=False)
    for i, encoding in zip(long, encodings, strict=True):
        if len(encoding.offsets) > max_tokens:
            cut[i] = texts[i][: encoding.offsets[max_tokens - 1][1]]
    return cut


def keep_ends(reranker, query: str, texts: Sequence[str]) -> list[str]:
    """Each text cut from the left (TEI's `truncation_direction: left`): its last tokens that fit
    the reranker's `max_length` beside the query and the pair's special tokens. Exact for the
    encoder family; a decoder family's prompt tokens are then cut from the right as usual. A
    family with a `passage_budget(query)` (qwen3-reranker: its chat template and instruction
    around the document) says itself how many tokens the document may keep. A remote engine (no
    tokenizer here) gets the texts whole and cuts them on the right."""
    tokenizer = getattr(reranker, "text_tokenizer", None)
    if tokenizer is None:
        return list(texts)
    passage_budget = getattr(reranker, "passage_budget", None)  # a family with a chat template
    if passage_budget is not None:
        budget = max(1, passage_budget(query))
    else:
        query_tokens = len(tokenizer.encode(query, add_special_tokens=False).ids)
        query_budget = getattr(reranker, "query_max_length", None) or max(1, reranker.max_length * 3 // 4)
        budget = reranker.max_length - min(query_tokens, query_budget)
        budget = max(1, budget - tokenizer.num_special_tokens_to_add(True))
    long = [i for i, text in enumerate(texts) if len(text) * MAX_TOKENS_PER_CHAR > budget]
    kept = list(texts)
    if not long:
        return kept
    encodings = tokenizer.encode_batch([texts[i] for i in long], add_special_tokens=False)
    for i, encoding in zip(long, encodings, strict=True):
        if len(encoding.offsets) > budget:
            kept[i] = texts[i][encoding.offsets[len(encoding.offsets) - budget][0] :]
    return kept


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
