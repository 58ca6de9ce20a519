"""The rerank fusion scoring (retrieval/fusion.py): per-query z-scores of reranker and
first-stage scores, mixed by the dense weight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search_service.errors import InvalidRequestError
from search_service.retrieval.fusion import (
    check_rerank_fusion_weight,
    describe_rerank_fusion,
    rerank_fusion_order,
    rerank_fusion_scores,
    zscores,
)


def test_zscores_and_their_degenerate_cases():
    assert zscores([1.0, 2.0, 3.0]) == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert list(zscores([4.0, 4.0, 4.0])) == [0.0, 0.0, 0.0]  # no spread: nothing to say
    assert list(zscores([7.5])) == [0.0]
    assert zscores([]).size == 0
    # the scale and offset of a model's scores do not matter
    assert zscores([10.0, 20.0, 40.0]) == pytest.approx(zscores([-1.0, 0.0, 2.0]))


def test_the_mix_follows_the_weight():
    rerank, dense = [2.0, 0.0, 1.0, -3.0], [0.30, 0.90, 0.50, 0.40]
    assert rerank_fusion_scores(rerank, dense, 0.0) == pytest.approx(zscores(rerank))
    assert rerank_fusion_scores(rerank, dense, 1.0) == pytest.approx(zscores(dense))
    mixed = rerank_fusion_scores(rerank, dense, 0.25)
    assert mixed == pytest.approx(0.75 * zscores(rerank) + 0.25 * zscores(dense))
    assert rerank_fusion_order(rerank, dense, 0.0) == [0, 2, 1, 3]
    assert rerank_fusion_order(rerank, dense, 1.0) == [1, 2, 3, 0]
    # a strong first-stage score lifts the candidate the reranker put third
    assert rerank_fusion_order(rerank, dense, 0.5)[0] == 1


def test_ties_keep_the_first_stage_order():
    assert rerank_fusion_order([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], 0.4) == [0, 1, 2]
    assert rerank_fusion_order([1.0, 3.0, 1.0], [0.2, 0.2, 0.2], 0.7) == [1, 0, 2]


@pytest.mark.parametrize("weight", [-0.01, 1.01, float("nan"), float("inf")])
def test_weights_outside_zero_to_one_are_refused(weight):
    with pytest.raises(ValueError, match="dense_weight"):
        rerank_fusion_scores([1.0, 2.0], [0.1, 0.2], weight)


def test_lists_must_match():
    with pytest.raises(ValueError, match="2 rerank scores but 3"):
        rerank_fusion_scores([1.0, 2.0], [0.1, 0.2, 0.3], 0.5)
    assert rerank_fusion_scores(np.array([]), np.array([]), 0.5).size == 0


def test_the_pipeline_checks_the_weight_it_is_given_and_describes_the_fusion():
    assert check_rerank_fusion_weight(0) == 0.0 and check_rerank_fusion_weight({"dense_weight": 0.35}) == 0.35
    for bad in (1.5, -1, float("nan"), True, "0.5", None):
        with pytest.raises(InvalidRequestError, match="between 0 and 1"):
            check_rerank_fusion_weight(bad)
    assert describe_rerank_fusion("dense", 0.0) is None
    assert describe_rerank_fusion("hybrid", 0.3) == {"dense_weight": 0.3, "rerank_weight": 0.7,
                                                     "first_stage_score": "fusion_score", "normalization": "zscore"}
