import dataclasses
from pathlib import Path

import pytest

from search_service.errors import ConfigurationError
from search_service.settings import Settings


def test_defaults_are_the_real_bge_models():
    settings = Settings.from_env({})
    assert settings.embedder_model == "BAAI/bge-m3"
    assert settings.reranker_model == "BAAI/bge-reranker-v2-m3"
    assert (settings.device, settings.candidates, settings.top_k) == ("auto", 50, 5)
    assert settings.database_url == f"sqlite:///{Path('data/rag.db').resolve()}"
    assert settings.chunk_tokens is None  # derived from the embedder at collection creation


def test_environment_is_parsed_and_typed(tmp_path):
    settings = Settings.from_env(
        {
            "RAG_DATA_DIR": str(tmp_path),
            "RAG_RERANKER_MODEL": "none",
            "RAG_DEVICE": "CUDA:1",
            "RAG_CANDIDATES": "20",
            "RAG_TOP_K": "3",
            "RAG_MAX_UPLOAD_BYTES": "2M",
            "RAG_CHUNK_TOKENS": "128",
            "RAG_CHUNK_OVERLAP": "16",
        }
    )
    assert settings.reranker_model is None
    assert settings.device == "cuda:1"
    assert (settings.candidates, settings.top_k) == (20, 3)
    assert settings.max_upload_bytes == 2 * 1024 * 1024
    assert (settings.chunk_tokens, settings.chunk_overlap) == (128, 16)
    assert settings.database_url == f"sqlite:///{(tmp_path / 'rag.db').resolve()}"


def test_overrides_win_over_environment():
    settings = Settings.from_env({"RAG_TOP_K": "3"}, top_k=4, device=None)
    assert settings.top_k == 4
    assert settings.device == "auto"


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.top_k = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"RAG_TOP_K": "five"}, "RAG_TOP_K must be an integer"),
        ({"RAG_CANDIDATES": "0"}, "RAG_CANDIDATES must be >= 1"),
        ({"RAG_DEVICE": "tpu"}, "RAG_DEVICE must be"),
        ({"RAG_TOP_K": "60"}, "cannot exceed RAG_CANDIDATES"),
        ({"RAG_MAX_UPLOAD_BYTES": "lots"}, "RAG_MAX_UPLOAD_BYTES must be a size"),
        ({"RAG_CHUNK_TOKENS": "64", "RAG_CHUNK_OVERLAP": "64"}, "at most half of RAG_CHUNK_TOKENS"),
        ({"RAG_CHUNK_TOKENS": "16"}, "RAG_CHUNK_TOKENS must be at least 32"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Settings.from_env(env)
