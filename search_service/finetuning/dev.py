"""The trained reranker on the held-out dev queries, loaded and scored as the service runs it.

Each dev line (from `finetune-data`) keeps the first stage's ranked chunk candidates. The
checkpoint is loaded with the service's own `load_reranker` (so a checkpoint the service cannot
load fails here), its scores are fused with the first-stage scores by the search pipeline's
`rerank_fusion_order` at each dense weight of a grid, chunks are merged into documents (a
document ranks where its best chunk is, as `eval` does) and nDCG@10 is computed by pytrec_eval.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from search_service.errors import InvalidRequestError
from search_service.evaluation.metrics import evaluate
from search_service.retrieval.fusion import rerank_fusion_order

WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, ..., 1


def read_dev(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines() if raw.strip()]
    for number, line in enumerate(lines, start=1):
        if not isinstance(line.get("candidates"), list) or not line.get("relevant"):
            raise InvalidRequestError(f"{path}:{number}: a dev line needs \"candidates\" and \"relevant\" "
                                      "(written by search-service finetune-data)", code="invalid_training_data")
    return lines


def _run(ranked_docs: list[str]) -> dict[str, float]:
    merged = list(dict.fromkeys(ranked_docs))
    return {doc: float(len(merged) - i) for i, doc in enumerate(merged)}


def dev_figures(reranker, lines: list[dict], rerank_depth: int, weights=WEIGHTS, progress: bool = True) -> dict:
    """nDCG@10 on the dev queries: first stage, reranked, and fused at each weight; the best weight."""
    qrels = {line["id"]: {doc: 1 for doc in line["relevant"]} for line in lines}
    first: dict[str, dict[str, float]] = {}
    fused: dict[float, dict[str, dict[str, float]]] = {w: {} for w in weights}
    for line in tqdm(lines, desc="dev queries", unit="query", disable=not progress):
        candidates = line["candidates"][:rerank_depth]
        docs = [c["document_id"] for c in candidates]
        first[line["id"]] = _run(docs)
        if not candidates:
            continue
        rerank = reranker.score(line["query"], [c["text"] for c in candidates])
        first_stage = [float(c["score"]) for c in candidates]
        for weight in weights:
            order = rerank_fusion_order(rerank, first_stage, weight)
            fused[weight][line["id"]] = _run([docs[i] for i in order])
    first_ndcg = evaluate(qrels, first)["nDCG@10"]
    by_weight = {w: evaluate(qrels, fused[w])["nDCG@10"] for w in weights}
    best = max(weights, key=lambda w: (round(by_weight[w], 6), -w))  # ties: the smaller weight
    return {
        "queries": len(lines),
        "rerank_depth": rerank_depth,
        "first_stage_ndcg@10": round(first_ndcg, 5),
        "reranked_ndcg@10": round(by_weight[0.0], 5) if 0.0 in by_weight else None,
        "fused_ndcg@10_by_dense_weight": {str(w): round(v, 5) for w, v in by_weight.items()},
        "best_dense_weight": best,
        "best_fused_ndcg@10": round(by_weight[best], 5),
    }
