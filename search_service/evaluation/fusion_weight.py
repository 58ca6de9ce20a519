"""Choosing the rerank fusion weight on judged queries, with one reranking pass.

`collect_candidates` sends each query through the service's reranked search once (rerank fusion
off) and keeps, per chunk, the reranker's raw score and the first-stage score. `sweep` then
fuses those scores for each weight exactly as the pipeline does (`retrieval.fusion`: z-scores
over the query's candidates, ties in first-stage order), merges chunks into documents and
scores nDCG@10, so trying 21 weights costs no extra reranking. Pick the weight on held-out
*training* queries (`best_weight`), never on the split that is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from search_service.evaluation.metrics import per_query
from search_service.retrieval.fusion import FIRST_STAGE_SCORE, rerank_fusion_order

GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))


@dataclass(frozen=True)
class Candidate:
    document_id: str
    rerank_score: float  # the reranker's raw score (logit)
    first_stage_score: float  # cosine (dense), BM25 (sparse) or the fused score (hybrid)


def collect_candidates(
    services, collection: str, queries: Mapping[str, str], *, depth: int = 100, mode: str = "dense",
    progress: bool = True,
) -> dict[str, list[Candidate]]:
    """query id -> its `depth` reranked candidates (chunks), in first-stage order."""
    field = FIRST_STAGE_SCORE[mode]
    rank_field = {"dense": "dense_rank", "sparse": "sparse_rank"}.get(mode)
    collected: dict[str, list[Candidate]] = {}
    for query_id, text in tqdm(queries.items(), desc="rerank candidates", unit="query", disable=not progress):
        response = services.search.search(collection, text, top_k=depth, candidates=depth, rerank=True,
                                          mode=mode, rerank_fusion=0.0)
        results = response["results"]
        # first-stage order: by the first-stage rank (hybrid: by the fused score, stable)
        if rank_field is not None:
            results = sorted(results, key=lambda r: r[rank_field])
        else:
            results = sorted(results, key=lambda r: -r[field])
        collected[query_id] = [Candidate(r["document_id"], float(r["rerank_score"]), float(r[field])) for r in results]
    return collected


def fused_ranking(candidates: Sequence[Candidate], weight: float) -> list[str]:
    """Document ids, best first: the candidates in fused order, each document at its best chunk."""
    if weight <= 0:
        order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].rerank_score, i))
    else:
        order = rerank_fusion_order([c.rerank_score for c in candidates],
                                    [c.first_stage_score for c in candidates], weight)
    return list(dict.fromkeys(candidates[i].document_id for i in order))


def sweep(
    qrels: Mapping[str, Mapping[str, int]],
    candidates: Mapping[str, Sequence[Candidate]],
    weights: Iterable[float] = GRID,
    metric: str = "nDCG@10",
) -> list[tuple[float, float]]:
    """(weight, mean `metric` over the judged queries) for each weight."""
    judged = {q: qrels[q] for q in candidates if q in qrels}
    scores = []
    for weight in weights:
        run = {}
        for query_id in judged:
            ranked = fused_ranking(candidates[query_id], weight)
            run[query_id] = {doc: float(len(ranked) - i) for i, doc in enumerate(ranked)}
        values = per_query(judged, run, (metric,))[metric]
        scores.append((float(weight), float(np.mean(list(values.values()))) if values else 0.0))
    return scores


def best_weight(
    qrels: Mapping[str, Mapping[str, int]],
    candidates: Mapping[str, Sequence[Candidate]],
    weights: Iterable[float] = GRID,
    metric: str = "nDCG@10",
) -> tuple[float, float]:
    """(the weight with the best mean `metric`, that mean); ties go to the smaller weight."""
    scores = sweep(qrels, candidates, weights, metric)
    return max(scores, key=lambda item: (item[1], -item[0]))
