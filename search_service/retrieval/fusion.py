"""Fusing the dense and sparse candidate lists of a hybrid search.

- `rrf` (default): reciprocal-rank fusion, score = sum over the lists a chunk is in of
  1 / (k + rank), ranks from 1, k = 60 (Cormack et al. 2009).
- `weighted`: each list's scores min-max normalized to [0, 1] over its candidates (1 when all
  are equal), then `dense_weight * dense + (1 - dense_weight) * sparse`; a chunk missing from a
  list gets 0 there.

Ties are broken by the better dense rank, then the better sparse rank, then the chunk id.

Rerank fusion (`rerank_fusion_scores`) is the second fusion, after reranking: the reranker's
scores and the first stage's scores of the same candidates, each z-scored over the query's
candidates, mixed as `(1 - dense_weight) * z(rerank) + dense_weight * z(first stage)`. With
`dense_weight` 0 the reranker's order is kept as it is (the pipeline then does not fuse at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search_service.errors import InvalidRequestError

RRF_K = 60
METHODS = ("rrf", "weighted")
# The score each search mode retrieves its candidates by: rerank fusion's first-stage score.
FIRST_STAGE_SCORE = {"dense": "dense_score", "sparse": "sparse_score", "hybrid": "fusion_score"}


@dataclass(frozen=True)
class Fusion:
    method: str = "rrf"
    k: int = RRF_K
    dense_weight: float = 0.5

    def describe(self) -> dict:
        if self.method == "rrf":
            return {"method": "rrf", "k": self.k}
        return {"method": "weighted", "dense_weight": self.dense_weight, "sparse_weight": round(1 - self.dense_weight, 12)}


def _ranks(hits: list[tuple[int, float]]) -> dict[int, int]:
    return {chunk_id: rank for rank, (chunk_id, _) in enumerate(hits, start=1)}


def _normalized(hits: list[tuple[int, float]]) -> dict[int, float]:
    if not hits:
        return {}
    scores = [score for _, score in hits]
    low, high = min(scores), max(scores)
    return {chunk_id: (score - low) / (high - low) if high > low else 1.0 for chunk_id, score in hits}


def fuse(dense: list[tuple[int, float]], sparse: list[tuple[int, float]], fusion: Fusion) -> list[tuple[int, float]]:
    """(chunk id, fused score) for every chunk in either list, best first."""
    dense_ranks, sparse_ranks = _ranks(dense), _ranks(sparse)
    ids = list(dict.fromkeys([*dense_ranks, *sparse_ranks]))
    if fusion.method == "rrf":
        scores = {
            chunk_id: sum(1.0 / (fusion.k + ranks[chunk_id]) for ranks in (dense_ranks, sparse_ranks) if chunk_id in ranks)
            for chunk_id in ids
        }
    elif fusion.method == "weighted":
        d, s = _normalized(dense), _normalized(sparse)
        scores = {
            chunk_id: fusion.dense_weight * d.get(chunk_id, 0.0) + (1 - fusion.dense_weight) * s.get(chunk_id, 0.0)
            for chunk_id in ids
        }
    else:
        raise ValueError(f"unknown fusion method {fusion.method!r}; known: {', '.join(METHODS)}")
    missing = len(dense) + len(sparse) + 1

    def order(chunk_id: int):
        return (-scores[chunk_id], dense_ranks.get(chunk_id, missing), sparse_ranks.get(chunk_id, missing), chunk_id)

    return [(chunk_id, scores[chunk_id]) for chunk_id in sorted(ids, key=order)]


def zscores(values: Sequence[float]) -> np.ndarray:
    """(value - mean) / population std over the values; all 0 when they are all equal (or one)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return array
    spread = array.std()
    if not np.isfinite(spread) or spread <= 1e-12 * max(1.0, float(np.abs(array).max())):
        return np.zeros_like(array)
    return (array - array.mean()) / spread


def rerank_fusion_scores(rerank: Sequence[float], first_stage: Sequence[float], dense_weight: float) -> np.ndarray:
    """One query's candidates: `(1 - w) * z(rerank) + w * z(first_stage)`, w = `dense_weight`.

    `rerank` are the reranker's raw scores (logits), `first_stage` the scores the candidates were
    retrieved with (the cosine for dense search), in the same order. The z-scores are taken over
    these candidates only, so the weight means the same whatever the two models' scales.
    """
    if not 0.0 <= dense_weight <= 1.0:  # also NaN
        raise ValueError(f"dense_weight must be between 0 and 1, got {dense_weight!r}")
    if len(rerank) != len(first_stage):
        raise ValueError(f"{len(rerank)} rerank scores but {len(first_stage)} first-stage scores")
    return (1.0 - dense_weight) * zscores(rerank) + dense_weight * zscores(first_stage)


def rerank_fusion_order(rerank: Sequence[float], first_stage: Sequence[float], dense_weight: float) -> list[int]:
    """The candidates' positions, best fused score first; ties keep the first stage's order."""
    fused = rerank_fusion_scores(rerank, first_stage, dense_weight)
    return sorted(range(len(fused)), key=lambda i: (-fused[i], i))


def check_rerank_fusion_weight(weight) -> float:
    """A rerank fusion dense weight (a number, or `{"dense_weight": w}`), checked: 0 <= w <= 1."""
    if isinstance(weight, dict):
        weight = weight.get("dense_weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise InvalidRequestError(
            f"rerank_fusion.dense_weight must be a number between 0 and 1, got {weight!r}",
            code="invalid_rerank_fusion",
        )
    return float(weight)


def describe_rerank_fusion(mode: str, weight: float) -> dict | None:
    """The response's `rerank_fusion`: what a reranked search fused (None: nothing, w = 0)."""
    if weight <= 0:
        return None
    return {
        "dense_weight": weight,
        "rerank_weight": round(1 - weight, 12),
        "first_stage_score": FIRST_STAGE_SCORE[mode],
        "normalization": "zscore",  # per query, over its reranked candidates
    }
