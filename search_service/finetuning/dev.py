"""The trained reranker on the held-out dev queries, loaded and scored as the service runs it.

Each dev line (from `finetune-data`) keeps the first stage's ranked chunk candidates. The
checkpoint is loaded with the service's own `load_reranker` (so a checkpoint the service cannot
load fails here) and scores the top `rerank_depth` of them once; `evaluation.fusion_weight.sweep`
then fuses those scores with the first-stage scores at each dense weight of its grid exactly as
the search pipeline does, ranks documents at their best chunk and scores nDCG@10 (pytrec_eval).
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from search_service.errors import InvalidRequestError
from search_service.evaluation.fusion_weight import GRID, Candidate, sweep
from search_service.evaluation.metrics import evaluate


def read_dev(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines() if raw.strip()]
    for number, line in enumerate(lines, start=1):
        if not isinstance(line.get("candidates"), list) or not line.get("relevant"):
            raise InvalidRequestError(f"{path}:{number}: a dev line needs \"candidates\" and \"relevant\" "
                                      "(written by search-service finetune-data)", code="invalid_training_data")
    return lines


def dev_figures(reranker, lines: list[dict], rerank_depth: int, weights=GRID, progress: bool = True) -> dict:
    """nDCG@10 on the dev queries: first stage, reranked, and fused at each weight; the best weight."""
    qrels = {line["id"]: {doc: 1 for doc in line["relevant"]} for line in lines}
    first: dict[str, dict[str, float]] = {}
    candidates: dict[str, list[Candidate]] = {}
    for line in tqdm(lines, desc="dev queries", unit="query", disable=not progress):
        top = line["candidates"][:rerank_depth]
        ranked = list(dict.fromkeys(c["document_id"] for c in top))
        first[line["id"]] = {doc: float(len(ranked) - i) for i, doc in enumerate(ranked)}
        scores = reranker.score(line["query"], [c["text"] for c in top]) if top else []
        candidates[line["id"]] = [Candidate(c["document_id"], float(s), float(c["score"])) for c, s in zip(top, scores)]
    by_weight = dict(sweep(qrels, candidates, weights))
    best = max(by_weight, key=lambda w: (by_weight[w], -w))  # ties: the smaller weight
    return {
        "queries": len(lines),
        "rerank_depth": rerank_depth,
        "first_stage_ndcg@10": round(evaluate(qrels, first)["nDCG@10"], 5),
        "reranked_ndcg@10": round(by_weight[0.0], 5) if 0.0 in by_weight else None,
        "fused_ndcg@10_by_dense_weight": {str(w): round(v, 5) for w, v in by_weight.items()},
        "best_dense_weight": best,
        "best_fused_ndcg@10": round(by_weight[best], 5),
    }
