"""The scoring contract of the base class: order, batching, empty input, rank, normalize, limits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from search_service.errors import ConfigurationError
from search_service.rerankers import resolve_device, resolve_dtype, sigmoid

MIXED = [
    "hi",
    "The giant panda is a bear species endemic to China. " * 30,
    "Paris is the capital of France.",
    "",
    "大熊猫主要吃竹子。" * 10,
    "bamboo",
    "The population of China is over 1.4 billion people.",
]


@pytest.fixture(scope="module")
def reference_scores(shared_reranker) -> list[float]:
    return [
        shared_reranker.score("what is panda?", [passage], batch_size=1)[0] for passage in MIXED
    ]


@pytest.mark.parametrize("batch_size", range(1, len(MIXED) + 1))
def test_order_is_preserved_for_every_batch_size(shared_reranker, reference_scores, batch_size):
    scores = shared_reranker.score("what is panda?", MIXED, batch_size=batch_size)

    assert scores == pytest.approx(reference_scores, abs=1e-5)


def test_scores_differ_between_passages(reference_scores):
    assert len({round(score, 4) for score in reference_scores}) == len(MIXED)


def test_empty_input_gives_empty_list(shared_reranker):
    assert shared_reranker.score("query", []) == []
    assert shared_reranker.score_pairs([]) == []
    assert shared_reranker.rank("query", []) == []


def test_score_pairs_matches_score(shared_reranker, reference_scores):
    pairs = [("what is panda?", passage) for passage in MIXED]
    assert shared_reranker.score_pairs(pairs) == pytest.approx(reference_scores, abs=1e-5)


def test_normalize_is_sigmoid_of_raw(shared_reranker, reference_scores):
    normalized = shared_reranker.score("what is panda?", MIXED, normalize=True)

    assert normalized == pytest.approx([1 / (1 + math.exp(-s)) for s in reference_scores], abs=1e-6)
    assert all(0.0 < value < 1.0 for value in normalized)


def test_sigmoid_is_stable_for_large_logits():
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(-1000.0) == 0.0
    assert sigmoid(0.0) == 0.5


def test_rank_is_sorted_descending(shared_reranker, reference_scores):
    ranked = shared_reranker.rank("what is panda?", MIXED)

    assert sorted(index for index, _ in ranked) == list(range(len(MIXED)))
    assert [score for _, score in ranked] == pytest.approx(
        sorted(reference_scores, reverse=True), abs=1e-5
    )
    assert shared_reranker.rank("what is panda?", MIXED, top_n=3) == ranked[:3]
    assert shared_reranker.rank("what is panda?", MIXED, top_n=0) == []


def test_rank_keeps_input_order_for_equal_scores(shared_reranker):
    passages = ["bamboo", "hi", "bamboo", "hi", "bamboo"]
    ranked = shared_reranker.rank("what is panda?", passages)

    for (first, first_score), (second, second_score) in itertools.pairwise(ranked):
        assert first_score >= second_score
        if first_score == second_score:
            assert first < second
    assert [index for index, _ in ranked if passages[index] == "bamboo"] == [0, 2, 4]


def test_max_length_is_capped_at_the_model_positions(shared_reranker):
    # XLM-R loses two positions to the padding offset: 514 positions -> 512 tokens.
    assert shared_reranker.max_supported_length == 512
    assert shared_reranker.max_length == 512
    pairs = [("q", MIXED[1] * 20)]
    assert len(shared_reranker.tokenize(pairs, 512)[0]) == 512
    assert shared_reranker.score_pairs(pairs, max_length=4096) == shared_reranker.score_pairs(pairs)


def test_attributes(shared_reranker, tiny_reranker_dir):
    assert shared_reranker.family == "encoder"
    assert shared_reranker.device == "cpu"
    assert shared_reranker.dtype == torch.float32
    assert shared_reranker.name == str(tiny_reranker_dir)


@pytest.mark.parametrize("bad", [["only one"], "a string", ("q", 3), ("a", "b", "c")])
def test_malformed_pairs_are_rejected(shared_reranker, bad):
    with pytest.raises((TypeError, ValueError)):
        shared_reranker.score_pairs([bad])


def test_device_and_dtype_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda:0") == torch.float16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype(torch.float16, "cpu") == torch.float16
    for bad_device in ["gpu", "cuda:x", "tpu"]:
        with pytest.raises(ConfigurationError):
            resolve_device(bad_device)
    with pytest.raises(ConfigurationError):
        resolve_dtype("int8", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("auto") in {"cpu", "mps"}
