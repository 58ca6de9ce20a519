"""A second `search-service serve` process as the remote engine (its `/v1/rerank`, TEI-shaped
`/rerank` and `/v1/embeddings`), serving the tiny encoder reranker and the real MiniLM: started
once per session of these tests."""

from __future__ import annotations

import pytest

from tests.support.serve_process import serve_process


@pytest.fixture(scope="session")
def remote_service(tmp_path_factory, minilm_path, tiny_reranker_dir):
    """The base URL of a live search-service with reranker `tiny` (the default) and MiniLM."""
    tmp = tmp_path_factory.mktemp("remote-search-service")
    env = {"RAG_RERANKERS": f"tiny={tiny_reranker_dir}", "RAG_RERANKER_MODEL": "tiny"}
    with serve_process(tmp, minilm_path, env=env) as (_process, base, _log):
        yield base


@pytest.fixture
def migrated_sqlite(tmp_path):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    return url
