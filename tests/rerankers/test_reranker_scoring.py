"""The encoder family's scoring details and the shared helpers (sigmoid, device and dtype names);
the contract every family keeps is tests/rerankers/test_family_contract.py."""

from __future__ import annotations

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


def test_scores_differ_between_passages(reference_scores):
    assert len({round(score, 4) for score in reference_scores}) == len(MIXED)


def test_sigmoid_is_stable_for_large_logits():
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(-1000.0) == 0.0
    assert sigmoid(0.0) == 0.5


def test_max_length_is_capped_at_the_model_positions(shared_reranker):
    # XLM-R loses two positions to the padding offset: 514 positions -> 512 tokens.
    assert shared_reranker.max_supported_length == 512
    assert shared_reranker.max_length == 512
    pairs = [("q", MIXED[1] * 20)]
    assert len(shared_reranker.tokenize(pairs, 512)[0]) == 512


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
