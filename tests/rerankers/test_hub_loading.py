"""Every decoder family loads by hub id from a Hugging Face cache, offline, like a local directory.

The checkpoint is laid out as huggingface_hub lays a download out (`models--BAAI--<name>/blobs`,
`snapshots/<revision>`, `refs/main`), in a temporary HF_HOME with HF_HUB_OFFLINE=1
(`offline_hf_home`, tests/rerankers/conftest.py), and loaded by `load_reranker("BAAI/...")` with
no path or cache_dir; the same cache passed as an explicit `cache_dir` is tested too. (The encoder
family's hub-id tests are in test_reranker_loading.py.)
"""

import shutil

import pytest

from search_service.errors import ModelLoadError
from search_service.rerankers import load_reranker
from search_service.testing.tiny_encoder import install_in_hf_cache

QUERY = "what do pandas eat?"
PASSAGES = ["The giant panda eats bamboo.", "hi", "", "熊猫吃竹子。", "bamboo " * 200]


def make_llm(path):
    from search_service.testing.tiny_llm import make_tiny_llm_reranker

    return make_tiny_llm_reranker(path)


def make_layerwise(path):
    from search_service.testing.tiny_layerwise import make_local_layerwise_reranker

    return make_local_layerwise_reranker(path)


def make_flag_layerwise(path):
    """Saved by FlagEmbedding's class, with its remote code files (reference env: slow)."""
    from tests.reference.checkpoints import make_tiny_layerwise_reranker

    return make_tiny_layerwise_reranker(path)


def make_lightweight(path):
    from search_service.testing.tiny_lightweight import make_local_lightweight_reranker

    return make_local_lightweight_reranker(path)


def make_qwen3(path):
    """Named so that the local directory is a Qwen3-Reranker too (the hub id says so)."""
    from search_service.testing.tiny_qwen import make_tiny_qwen3_reranker

    return make_tiny_qwen3_reranker(path.parent / "Qwen3-Reranker-tiny")


# family, checkpoint maker, hub id, non-default family options to score with as well
FAMILIES = [
    pytest.param(
        "llm", make_llm, "BAAI/bge-reranker-tiny-gemma", {"prompt": "Yes or No?"}, id="llm"
    ),
    pytest.param(
        "layerwise",
        make_layerwise,
        "BAAI/bge-reranker-tiny-layerwise",
        {"cutoff_layers": 2},
        id="layerwise",
    ),
    pytest.param(
        "layerwise",
        make_flag_layerwise,
        "BAAI/bge-reranker-tiny-layerwise",
        {"cutoff_layers": 2},
        id="layerwise-flag-saved",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "lightweight",
        make_lightweight,
        "BAAI/bge-reranker-tiny-lightweight",
        {"cutoff_layers": 3, "compress_ratio": 2, "compress_layers": [1]},
        id="lightweight",
    ),
    pytest.param(
        "qwen3-reranker",
        make_qwen3,
        "Qwen/Qwen3-Reranker-tiny",
        {"prompt": "Find the passage about pandas"},
        id="qwen3-reranker",
    ),
]


def _assert_same_scores(remote, local, options):
    for extra in ({}, options):
        assert remote.score(QUERY, PASSAGES, **extra) == pytest.approx(
            local.score(QUERY, PASSAGES, **extra), abs=1e-6
        ), extra


@pytest.mark.parametrize("family, make, repo_id, options", FAMILIES)
def test_loads_by_hub_id_from_an_offline_hf_home(
    family, make, repo_id, options, tmp_path, offline_hf_home
):
    checkpoint = make(tmp_path / "checkpoint")
    local = load_reranker(str(checkpoint), device="cpu")
    snapshot = install_in_hf_cache(checkpoint, offline_hf_home, repo_id)
    assert (
        snapshot.parent.parent == offline_hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    )
    shutil.rmtree(checkpoint)  # only the cache is left to load from

    remote = load_reranker(repo_id, device="cpu")

    assert remote.family == local.family == family
    assert remote.name == repo_id
    _assert_same_scores(remote, local, options)
    with pytest.raises(ModelLoadError, match="offline"):
        load_reranker("BAAI/not-in-this-cache", device="cpu")


@pytest.mark.parametrize("family, make, repo_id, options", FAMILIES)
def test_loads_by_hub_id_with_an_explicit_cache_dir(
    family, make, repo_id, options, tmp_path, monkeypatch
):
    # No patched constants: the cache is passed explicitly and HF_HUB_OFFLINE is set after import.
    checkpoint = make(tmp_path / "checkpoint")
    local = load_reranker(str(checkpoint), device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    install_in_hf_cache(checkpoint, tmp_path / "home", repo_id)
    cache_dir = tmp_path / "home" / "hub"

    remote = load_reranker(repo_id, device="cpu", cache_dir=cache_dir)

    assert remote.family == local.family == family
    _assert_same_scores(remote, local, options)
    with pytest.raises(ModelLoadError, match="offline"):
        load_reranker("BAAI/not-in-this-cache", device="cpu", cache_dir=cache_dir)
