"""Passage token ids come back from the cache equal to a fresh tokenization, within its bound."""

from __future__ import annotations

import copy

import pytest

from search_service.rerankers.token_cache import TokenCache, text_key
from tests.rerankers.conftest import PARITY_PAIRS


@pytest.fixture
def reranker(shared_reranker):
    reranker = copy.deepcopy(shared_reranker)
    assert reranker.token_cache.max_tokens and len(reranker.token_cache) == 0  # a copy starts empty
    return reranker


def features(reranker, pairs, max_length):
    return [(f.input_ids, f.token_type_ids) for f in reranker.tokenize(pairs, max_length)]


@pytest.mark.parametrize("side", ["right", "left"])
def test_cached_ids_build_the_same_pairs_at_every_max_length(reranker, side):
    reranker._truncation_side = side
    uncached = copy.deepcopy(reranker)
    uncached.token_cache = TokenCache(0)
    pairs = PARITY_PAIRS
    for max_length in (512, 16, 64, 512, 8):  # filled at 512, then served cut shorter
        assert features(reranker, pairs, max_length) == features(uncached, pairs, max_length)
    assert reranker.token_cache.hits >= 4 * len(PARITY_PAIRS) - 4  # repeated passages hit
    assert len(uncached.token_cache) == 0


def test_scores_with_a_warm_cache_equal_cold_scores(reranker):
    query = "what is panda?"
    passages = [passage for _, passage in PARITY_PAIRS]
    cold = reranker.score(query, passages)
    misses = reranker.token_cache.misses
    warm = reranker.score("a different query about bamboo", passages[:3]) and reranker.score(
        query, passages
    )
    assert warm == cold
    assert reranker.token_cache.misses == misses  # nothing tokenized again


def test_the_cache_is_bounded_by_tokens_and_evicts_the_oldest():
    cache = TokenCache(max_tokens=10)
    cache.put(b"a", [1, 2, 3, 4])
    cache.put(b"b", [5, 6, 7, 8])
    assert cache.get_many([b"a"]) == [[1, 2, 3, 4]]  # a is now the most recent
    cache.put(b"c", [9, 10, 11])
    assert cache.get_many([b"a", b"b", b"c"]) == [[1, 2, 3, 4], None, [9, 10, 11]]
    assert cache.tokens == 7 and len(cache) == 2
    cache.put(b"d", list(range(11)))  # larger than the whole cache: not kept
    assert cache.get_many([b"d"]) == [None] and cache.tokens == 7
    cache.put(b"a", [1])  # replaced, not counted twice
    assert cache.tokens == 4


def test_a_disabled_cache_keeps_nothing(reranker):
    reranker.token_cache = TokenCache(0)
    reranker.score("q", ["one passage", "two passages"])
    assert len(reranker.token_cache) == 0 and reranker.token_cache.get_many([text_key("q")]) == [
        None
    ]


def test_setting_sizes_each_encoder_cache(tiny_reranker_dir):
    from search_service.services import load_rerankers
    from search_service.settings import Settings

    settings = Settings.from_env(
        {
            "RAG_RERANKER_MODEL": str(tiny_reranker_dir),
            "RAG_RERANK_TOKEN_CACHE": "1234",
            "RAG_DEVICE": "cpu",
        }
    )
    rerankers = load_rerankers(settings)
    assert rerankers.rerankers[rerankers.default].token_cache.max_tokens == 1234
