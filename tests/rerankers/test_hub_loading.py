"""Every decoder family loads by hub id from a Hugging Face cache, offline, like a local directory.

(The encoder family's hub-id test is in test_reranker_loading.py, the lightweight one in
test_lightweight_family.py.)
"""

import pytest

from search_service.rerankers import load_reranker
from tests.support.tiny_models import install_in_hf_cache

PASSAGES = ["The giant panda eats bamboo.", "hi", "", "熊猫吃竹子。"]


def make_llm(path):
    from tests.support.tiny_llm import make_tiny_llm_reranker

    return make_tiny_llm_reranker(path)


def make_layerwise(path):
    from tests.support.tiny_layerwise import make_tiny_layerwise_reranker

    return make_tiny_layerwise_reranker(path)


@pytest.mark.parametrize(
    "family, make, repo_id",
    [
        ("llm", make_llm, "BAAI/bge-reranker-tiny-gemma"),
        pytest.param("layerwise", make_layerwise, "BAAI/bge-reranker-tiny-layerwise", marks=pytest.mark.slow),
    ],
)
def test_decoder_families_load_by_hub_id_offline(family, make, repo_id, tmp_path, monkeypatch):
    checkpoint = make(tmp_path / "checkpoint")
    local = load_reranker(str(checkpoint), device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    install_in_hf_cache(checkpoint, tmp_path / "home", repo_id)
    remote = load_reranker(repo_id, device="cpu", cache_dir=tmp_path / "home" / "hub")
    assert remote.family == local.family == family
    query = "what do pandas eat?"
    assert remote.score(query, PASSAGES) == pytest.approx(local.score(query, PASSAGES), abs=1e-6)
    with pytest.raises(Exception, match="could not be loaded|not.*cache|offline"):
        load_reranker("BAAI/not-in-this-cache", device="cpu", cache_dir=tmp_path / "home" / "hub")
