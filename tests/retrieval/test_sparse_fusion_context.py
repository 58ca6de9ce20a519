"""Unit tests: the CJK-aware analyzer, BM25 scoring, fusion, the rerank cache, context packing."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.errors import InvalidRequestError
from search_service.retrieval.analyzer import analyze
from search_service.retrieval.context import ContextTokenizers, pack_context
from search_service.retrieval.fusion import Fusion, fuse
from search_service.retrieval.rerank_cache import RerankCache, score_with_cache
from search_service.retrieval.sparse import BM25Scorer, LexicalScorer


def test_analyzer_splits_words_and_cjk_bigrams():
    assert analyze("Ticket XK-4471, ÜBER straße") == ["ticket", "xk", "4471", "über", "strasse"]
    terms = analyze("大熊猫主要吃竹子。")
    assert "大熊猫主要吃竹子" not in terms  # not one token per sentence
    assert {"大熊", "熊猫", "竹子", "熊"} <= set(terms)
    assert analyze("bge-m3で検索する") == ["bge", "m3", *"で検索する", "で検", "検索", "索す", "する"]
    assert analyze("서울 날씨") == ["서", "울", "서울", "날", "씨", "날씨"]


def test_bm25_ranks_chinese_by_words_and_respects_allowed_ids():
    texts = ["大熊猫主要吃竹子,也吃少量的肉。", "北京上海广州深圳是中国的大城市。", "熊猫 panda bamboo"]
    scorer = BM25Scorer(np.array([10, 20, 30]), [analyze(t) for t in texts])
    hits = scorer.search(analyze("熊猫吃竹子"), 5, None)
    assert [chunk for chunk, _ in hits] == [10, 30]
    assert scorer.search(analyze("熊猫吃竹子"), 5, np.array([30])) == [hits[1]]
    assert scorer.search(analyze("unknown words"), 5, None) == []
    assert BM25Scorer(np.array([], dtype=np.int64), []).search(["x"], 3, None) == []


def test_lexical_scorer_is_the_dot_product_of_shared_tokens():
    scorer = LexicalScorer(np.array([1, 2]), [{"5": 0.5, "7": 0.25}, {"7": 1.0}])
    assert scorer.search({"7": 2.0, "9": 1.0}, 5, None) == [(2, 2.0), (1, 0.5)]


def test_rrf_and_weighted_fusion():
    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    sparse = [(3, 12.0), (4, 6.0)]
    fused = dict(fuse(dense, sparse, Fusion()))
    assert fused == pytest.approx({1: 1 / 61, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62})
    assert [c for c, _ in fuse(dense, sparse, Fusion())] == [3, 1, 2, 4]  # 2 before 4: better dense rank
    weighted = dict(fuse(dense, sparse, Fusion(method="weighted", dense_weight=0.25)))
    assert weighted == pytest.approx({1: 0.25, 2: 0.25 * 0.875, 3: 0.75, 4: 0.0})


class CountingReranker:
    def __init__(self):
        self.scored: list[str] = []

    def score(self, query, passages, **options):
        self.scored.extend(passages)
        return [float(len(p)) + options.get("bonus", 0) for p in passages]


def test_rerank_cache_scores_only_misses_and_stays_bounded():
    cache, model = RerankCache(capacity=3), CountingReranker()
    scores, hits, misses = score_with_cache(cache, model, "m", "q", ["a", "bb"], None)
    assert (scores, hits, misses) == ([1.0, 2.0], 0, 2)
    scores, hits, misses = score_with_cache(cache, model, "m", "q", ["bb", "ccc", "a"], None)
    assert (scores, hits, misses) == ([2.0, 3.0, 1.0], 2, 1) and model.scored == ["a", "bb", "ccc"]
    assert score_with_cache(cache, model, "m", "q", ["a"], {"bonus": 1})[0] == [2.0]  # options are in the key
    assert len(cache) == 3
    assert score_with_cache(cache, model, "m", "q", ["bb"], None)[1] == 0  # least recently used: evicted
    assert score_with_cache(RerankCache(0), model, "m", "q", ["a"], None)[1:] == (0, 1)


def words(text: str) -> int:
    return len(text.split())


def prefix(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def passage(rank, doc, start, text, ordinal, **meta):
    return {"rank": rank, "document_id": doc, "source": f"{doc}.txt", "chunk_id": 100 + rank, "start": start,
            "end": start + len(text), "text": text, "ordinal": ordinal, "chunk_metadata": meta}


def test_pack_context_merges_overlaps_and_neighbours_within_the_budget():
    source = "alpha beta gamma delta epsilon zeta eta theta"
    a = passage(1, "d", 0, source[:22], 0, heading_path=["H"], page=2)  # alpha beta gamma delta
    b = passage(2, "d", 17, source[17:35], 1)  # delta epsilon zeta (overlaps a)
    c = passage(3, "e", 0, "one two three four five six seven", 0)
    d = passage(4, "d", 40, source[40:], 3)  # theta: not a neighbour of b (ordinal 1)
    packed = pack_context([a, b, c, d], 12, words, prefix)
    assert packed["text"] == "[1] alpha beta gamma delta epsilon zeta\n\n[2] theta"
    assert packed["tokens"] == 9 and packed["skipped_ranks"] == [3]
    first = packed["citations"][0]
    assert (first["start"], first["end"], first["chunk_ids"], first["ranks"]) == (0, 35, [101, 102], [1, 2])
    assert (first["heading_path"], first["page"], first["source"]) == (["H"], 2, "d.txt")
    gap = passage(2, "d", 24, "epsilon", 1)  # next chunk, whitespace gap of 2 characters
    assert pack_context([a, gap], 50, words, prefix)["text"] == "[1] alpha beta gamma delta\n\nepsilon"
    truncated = pack_context([c], 4, words, prefix)
    assert truncated["text"] == "[1] one two three" and truncated["citations"][0]["truncated"] is True


def test_context_tokenizers_allow_only_the_configured_models(minilm_embedder):
    from types import SimpleNamespace

    reranker = SimpleNamespace(name="/models/reranker", tokenizer=minilm_embedder.tokenizer)
    tokenizers = ContextTokenizers.for_models(minilm_embedder, {"fast": reranker}, ["org/extra"])
    assert tokenizers.check(None) == minilm_embedder.model_id
    for name in ("fast", "/models/reranker", "org/extra", minilm_embedder.model_id):
        assert tokenizers.check(name) == name
    for name in ("bert-base-uncased", "/models", "/models/reranker/", "Fast"):
        with pytest.raises(InvalidRequestError) as refused:
            tokenizers.check(name)
        assert refused.value.code == "context_tokenizer_not_allowed"
    tokenizers.allow(["late/one", " "])
    assert tokenizers.is_allowed("late/one") and not tokenizers.is_allowed(" ")
    # a reranker's tokenizer is its own object, copied, under either name: nothing loaded by name
    name, count, _ = tokenizers.counter("/models/reranker")
    tokens = minilm_embedder.tokenizer("pandas eat bamboo", add_special_tokens=False)["input_ids"]
    expected = len(tokens)
    assert name == "fast" and count("pandas eat bamboo") == expected  # shown by its name, not path
    assert tokenizers.get("fast")[1] is not reranker.tokenizer
