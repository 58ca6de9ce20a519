"""The remote runtime and remote embeddings against the real Infinity (infinity-emb on CPU, its
own cached venv: `search_service/testing/infinity_env.py`) serving the tiny encoder reranker and
MiniLM: rankings equal the in-process ones, logits within 1e-4, vectors within 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.embedding.remote import load_remote_embedder
from search_service.errors import ConfigurationError
from search_service.remote.config import RERANK_PROTOCOLS, RemoteConfig
from search_service.rerankers.runtimes.registry import runtime_named
from tests.support.documents import DOCUMENTS, PARAPHRASES

pytestmark = pytest.mark.slow

QUERY = "what do giant pandas eat?"
PASSAGES = [
    "Giant pandas eat bamboo almost exclusively.",
    "Paris is the capital of France.",
    "大熊猫主要吃竹子。",
    "Bears eat fish, honey and berries; pandas mostly bamboo, " * 20,
    "The quick brown fox jumps over the lazy dog near the river bank.",
]


def connect(peer, **options):
    values = {"timeout_s": 60, "model": peer.reranker_model, **options}
    config = RemoteConfig(protocol="infinity", url=peer.url, **values).check("test", RERANK_PROTOCOLS)
    return runtime_named("remote").connect(config, name="infinity", setting="RAG_RERANKERS (infinity)")


@pytest.mark.parametrize("batch_size", [None, 2], ids=["one-request", "split-in-3"])
def test_infinity_rerank_equals_in_process(infinity_peer, batch_size):
    from search_service.rerankers import load_reranker

    local = load_reranker(str(infinity_peer.reranker_dir), device="cpu").score(QUERY, PASSAGES)
    reranker = connect(infinity_peer, batch_size=batch_size)
    try:
        ranked = reranker.rank(QUERY, PASSAGES)
    finally:
        reranker.close()
    assert [index for index, _ in ranked] == sorted(range(len(local)), key=lambda i: -local[i])
    scores = dict(ranked)
    np.testing.assert_allclose([scores[i] for i in range(len(PASSAGES))], local, atol=1e-4)
    assert reranker.client.calls == {"ok": 1 + (3 if batch_size else 1)}  # the start-up probe, then the call


def test_infinity_wrong_model_name_is_a_clear_error(infinity_peer):
    with pytest.raises(ConfigurationError) as error:
        connect(infinity_peer, model="no-such-model")
    assert "RAG_RERANKERS (infinity)" in error.value.message and "no-such-model" in error.value.message


def test_infinity_embeddings_equal_local(infinity_peer, minilm_embedder):
    config = RemoteConfig(protocol="openai", url=infinity_peer.url, model=infinity_peer.embedder_model, timeout_s=60)
    embedder = load_remote_embedder(config, str(infinity_peer.embedder_dir), query_cache_size=0)
    texts = [*DOCUMENTS.values(), *PARAPHRASES.values()]
    try:
        remote = embedder.embed(texts)
        query = embedder.embed([PARAPHRASES["gil.md"]], kind="query")
    finally:
        embedder.close()
    assert embedder.dimension == 384
    np.testing.assert_allclose(remote, minilm_embedder.embed(texts), atol=1e-5)
    np.testing.assert_allclose(query, minilm_embedder.embed([PARAPHRASES["gil.md"]], kind="query"), atol=1e-5)
