"""Second reference: the model card's raw-transformers snippet, and tokenization under 4.46.

The snippet (`tokenizer(pairs, padding=True, truncation=True, max_length=512)`) truncates
differently from FlagEmbedding (longest-first, no 3/4 query cap), so it is only a reference for
pairs that need no truncation; there both constructions give the same tokens by design.
"""

from __future__ import annotations

import pytest

from tests.reference.env import transformers_reference

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4


def _fits_untruncated(reranker, query: str, passage: str, max_length: int = 512) -> bool:
    tokenizer = reranker.tokenizer
    query_tokens = len(tokenizer(query, add_special_tokens=False)["input_ids"])
    passage_tokens = len(tokenizer(passage, add_special_tokens=False)["input_ids"])
    return query_tokens <= max_length * 3 // 4 and query_tokens + passage_tokens + 4 <= max_length


@pytest.fixture(scope="module")
def short_pairs(shared_reranker, parity_pairs) -> list[tuple[str, str]]:
    pairs = [pair for pair in parity_pairs if _fits_untruncated(shared_reranker, *pair)]
    assert len(pairs) >= 8
    return pairs


@pytest.fixture(scope="module")
def long_query_pair(parity_pairs) -> tuple[str, str]:
    return max(parity_pairs, key=lambda pair: len(pair[0]))


@pytest.fixture(scope="module")
def reference(tiny_reranker_dir, parity_pairs, short_pairs, long_query_pair) -> dict[str, object]:
    """All transformers-4.46 jobs in one subprocess."""
    as_lists = lambda pairs: [list(pair) for pair in pairs]
    jobs = {
        "snippet_short": {"kind": "snippet", "pairs": as_lists(short_pairs)},
        "snippet_long_query": {"kind": "snippet", "pairs": as_lists([long_query_pair])},
        "tokens_512": {"kind": "tokenize", "pairs": as_lists(parity_pairs), "max_length": 512},
        "tokens_64": {"kind": "tokenize", "pairs": as_lists(parity_pairs), "max_length": 64},
    }
    return dict(
        zip(jobs, transformers_reference(tiny_reranker_dir, list(jobs.values())), strict=True)
    )


def test_snippet_agrees_on_untruncated_pairs(shared_reranker, short_pairs, reference):
    assert shared_reranker.score_pairs(short_pairs) == pytest.approx(
        reference["snippet_short"], abs=TOLERANCE
    )


def test_snippet_differs_when_the_query_is_truncated(shared_reranker, long_query_pair, reference):
    # Documents why FlagEmbedding, not the snippet, is the reference for long inputs.
    ours = shared_reranker.score_pairs([long_query_pair])[0]
    assert abs(ours - reference["snippet_long_query"][0]) > TOLERANCE


def test_tokenizer_is_the_same_under_transformers_4_and_5(shared_reranker, parity_pairs, reference):
    tokens = reference["tokens_512"]
    tokenizer = shared_reranker.tokenizer
    assert tokens["tokenizer_class"] == "XLMRobertaTokenizerFast"
    assert [tokenizer(q, p)["input_ids"] for q, p in parity_pairs] == tokens["pair_ids"]
    queries = [q for q, _ in parity_pairs]
    passages = [p for _, p in parity_pairs]
    assert tokenizer(queries, add_special_tokens=False)["input_ids"] == tokens["query_ids"]
    assert tokenizer(passages, add_special_tokens=False)["input_ids"] == tokens["passage_ids"]


@pytest.mark.parametrize("max_length", [512, 64])
def test_pair_inputs_match_prepare_for_model(shared_reranker, parity_pairs, reference, max_length):
    expected = reference[f"tokens_{max_length}"]["flag_ids"]
    ours = [feature.input_ids for feature in shared_reranker.tokenize(parity_pairs, max_length)]
    assert ours == expected
    assert max(len(ids) for ids in ours) == max_length
