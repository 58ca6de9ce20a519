"""The real Infinity as a remote peer: a tiny encoder reranker and the real MiniLM, served on CPU.

Use the `infinity_peer` fixture (tests/conftest.py), session-scoped: Infinity's own venv is built
once per machine (cached, see `search_service/testing/infinity_env.py`) and its server starts once
per test session. The test using it is marked `slow`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from search_service.testing.infinity_env import infinity_server
from search_service.testing.minilm import minilm_path
from search_service.testing.tiny_encoder import make_tiny_encoder_reranker

RERANKER_MODEL = "tiny-reranker"
EMBEDDER_MODEL = "minilm"


@dataclass(frozen=True)
class InfinityPeer:
    url: str
    reranker_dir: Path  # served as RERANKER_MODEL (a bge-reranker-like XLM-R cross-encoder)
    embedder_dir: Path  # served as EMBEDDER_MODEL (all-MiniLM-L6-v2)
    reranker_model: str = RERANKER_MODEL
    embedder_model: str = EMBEDDER_MODEL


@contextmanager
def infinity_peer(workdir: Path) -> Iterator[InfinityPeer]:
    reranker_dir = make_tiny_encoder_reranker(workdir / "tiny-reranker", seed=7)
    embedder_dir = Path(minilm_path())
    with infinity_server({RERANKER_MODEL: reranker_dir, EMBEDDER_MODEL: embedder_dir}) as url:
        yield InfinityPeer(url, reranker_dir, embedder_dir)
