"""Infinity as a peer engine: its pinned venv, and that it scores and embeds like the service.

What Infinity answers here is what the remote-engine tests compare against, so check first that
it serves the same checkpoints the same way: raw reranker logits equal the in-process encoder
family's, and embeddings equal the service's MiniLM embedder's.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from search_service.testing import infinity_env, pinned_env

QUERY = "what do giant pandas eat?"
PASSAGES = [
    "Giant pandas eat bamboo almost exclusively.",
    "Paris is the capital of France.",
    "",
    "大熊猫主要吃竹子。",
    "Bears eat fish, honey and berries; pandas mostly bamboo, " * 20,
]


def test_lock_pins_infinity_and_its_clashing_dependencies():
    lines = infinity_env.LOCK_FILE.read_text().splitlines()
    assert "infinity_emb==0.0.78" in lines
    assert "torch==2.13.0" in lines
    # The reasons it has its own venv: each of these clashes with the service's own pins.
    numpy = next(line for line in lines if line.startswith("numpy=="))
    transformers_st = next(line for line in lines if line.startswith("sentence-transformers=="))
    assert numpy.split("==")[1].startswith("1.") and transformers_st.split("==")[1].startswith("3.")


def test_env_dir_follows_the_lock_and_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(infinity_env.DIR_VARIABLE, raising=False)
    key = pinned_env.environment_key(infinity_env.LOCK_FILE)
    assert infinity_env.environment_dir().name == f"infinity-{key}"
    monkeypatch.setenv(infinity_env.DIR_VARIABLE, str(tmp_path / "inf"))
    assert infinity_env.environment_dir() == tmp_path / "inf"


@pytest.mark.slow
def test_infinity_reranks_with_the_encoder_familys_raw_scores(infinity_peer):
    from search_service.rerankers import load_reranker

    response = requests.post(
        f"{infinity_peer.url}/rerank",
        json={"model": infinity_peer.reranker_model, "query": QUERY, "documents": PASSAGES,
              "raw_scores": True, "return_documents": False},
        timeout=60,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    remote = {item["index"]: item["relevance_score"] for item in response.json()["results"]}
    local = load_reranker(str(infinity_peer.reranker_dir), device="cpu").score(QUERY, PASSAGES)
    assert sorted(remote) == list(range(len(PASSAGES)))
    np.testing.assert_allclose([remote[i] for i in range(len(PASSAGES))], local, atol=1e-4)
    assert len(set(np.round(local, 3))) == len(PASSAGES)  # the tiny model tells the pairs apart


@pytest.mark.slow
def test_infinity_embeds_like_the_service(infinity_peer, minilm_embedder):
    response = requests.post(
        f"{infinity_peer.url}/embeddings",
        json={"model": infinity_peer.embedder_model, "input": PASSAGES},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    remote = np.array([item["embedding"] for item in sorted(response.json()["data"], key=lambda d: d["index"])])
    local = minilm_embedder.embed(PASSAGES, kind="passage")
    assert remote.shape == local.shape
    np.testing.assert_allclose(remote, local, atol=1e-5)
