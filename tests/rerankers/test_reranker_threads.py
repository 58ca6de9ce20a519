"""One loaded reranker serves several request threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

QUERIES = [
    "what is panda?",
    "熊猫是什么?",
    "What is the capital of France?",
    "how do rerankers work?",
]
PASSAGES = [
    "The giant panda is a bear species endemic to China.",
    "大熊猫主要吃竹子。" * 20,
    "Paris is the capital of France.",
    "",
    "Reranking scores every candidate passage against the query. " * 40,
]


def test_concurrent_scoring_gives_identical_results(shared_reranker):
    expected = {query: shared_reranker.score(query, PASSAGES, batch_size=2) for query in QUERIES}

    def work(query: str) -> list[float]:
        return [shared_reranker.score(query, PASSAGES, batch_size=2) for _ in range(5)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(QUERIES, pool.map(work, QUERIES), strict=True))

    for query, runs in results.items():
        for scores in runs:
            assert scores == pytest.approx(expected[query], abs=1e-6)


def test_tokenizing_alongside_the_hf_tokenizer(shared_reranker):
    # The HF tokenizer's __call__ reconfigures its backend on every call; ours must not share it.
    def hf_calls() -> None:
        for _ in range(50):
            shared_reranker.tokenizer(
                ["what is panda?"] * 8, PASSAGES[:1] * 8, truncation=True, max_length=32
            )

    def our_calls() -> None:
        for _ in range(50):
            shared_reranker.tokenize([("what is panda?", passage) for passage in PASSAGES], 64)

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(hf_calls),
            pool.submit(our_calls),
            pool.submit(hf_calls),
            pool.submit(our_calls),
        ]
        for future in futures:
            future.result()
