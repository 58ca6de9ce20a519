"""Query embeddings are cached per (model, text) and equal what the model computes."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.embedding import load_embedder
from search_service.embedding.query_cache import QueryEmbeddingCache
from search_service.settings import Settings


@pytest.fixture()
def embedder(minilm_path):
    return load_embedder(minilm_path, device="cpu", batch_size=8, query_cache_size=3)


def count_encodes(embedder):
    calls = []
    original = embedder.model.encode_query

    def counting(texts, **kwargs):
        calls.append(list(texts))
        return original(texts, **kwargs)

    embedder.model.encode_query = counting
    return calls


def test_cached_queries_equal_fresh_ones_and_skip_the_model(embedder):
    calls = count_encodes(embedder)
    first = embedder.embed(["what do pandas eat", "tallest mountain"], kind="query")
    again = embedder.embed(["tallest mountain", "what do pandas eat", "new question"], kind="query")
    assert calls == [["what do pandas eat", "tallest mountain"], ["new question"]]
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[1], first[0])
    direct = embedder.model.encode_query(["new question"], normalize_embeddings=True)
    np.testing.assert_allclose(again[2], direct[0], atol=1e-6)
    assert again.flags.writeable and again.dtype == np.float32


def test_duplicates_in_one_call_are_encoded_once(embedder):
    calls = count_encodes(embedder)
    vectors = embedder.embed(["same", "same", "other"], kind="query")
    assert calls == [["same", "other"]]
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_least_recently_used_entries_are_evicted(embedder):
    calls = count_encodes(embedder)
    for text in ["a", "b", "c"]:
        embedder.embed([text], kind="query")
    embedder.embed(["a"], kind="query")  # a is now the most recent
    embedder.embed(["d"], kind="query")  # evicts b
    embedder.embed(["a", "c", "d"], kind="query")
    assert len(embedder.query_cache) == 3
    embedder.embed(["b"], kind="query")
    assert calls == [["a"], ["b"], ["c"], ["d"], ["b"]]


def test_passages_are_never_cached(embedder):
    embedder.embed(["a passage"], kind="passage")
    assert len(embedder.query_cache) == 0


def test_a_returned_array_cannot_corrupt_the_cache(embedder):
    vectors = embedder.embed(["mutable?"], kind="query")
    expected = vectors.copy()
    vectors[:] = 0
    np.testing.assert_array_equal(embedder.embed(["mutable?"], kind="query"), expected)


def test_capacity_zero_disables_the_cache(minilm_path):
    uncached = load_embedder(minilm_path, device="cpu", query_cache_size=0)
    calls = count_encodes(uncached)
    uncached.embed(["q"], kind="query")
    uncached.embed(["q"], kind="query")
    assert len(calls) == 2 and len(uncached.query_cache) == 0


def test_keys_include_the_model():
    cache = QueryEmbeddingCache(4)
    cache.put_many("model-a", ["q"], np.ones((1, 2), dtype=np.float32))
    assert cache.get_many("model-b", ["q"]) == [None]
    assert cache.get_many("model-a", ["q"])[0].tolist() == [1.0, 1.0]


def test_setting_is_read_from_the_environment():
    assert Settings.from_env({"RAG_QUERY_CACHE_SIZE": "0"}).query_cache_size == 0
    assert Settings.from_env({}).query_cache_size == 1024
