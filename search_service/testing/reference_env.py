"""The FlagEmbedding reference environment: a cached venv built from `reference-requirements.lock`.

FlagEmbedding 1.4.2 only runs on transformers 4.46, while the service runs on transformers 5, so
reference scores are computed in a separate venv, through a subprocess that speaks JSON.

The venv lives in `$RAG_REFERENCE_ENV_DIR`, or `~/.cache/search-service/reference-<hash>`; see
`pinned_env` for the cache key, the file lock and rebuilds of interrupted builds. The parity tests
(tests/reference/env.py) and benchmarks/rerank.py both build it from here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from search_service.testing import pinned_env
from search_service.testing.pinned_env import COMPLETE_MARKER, TORCH_REQUIREMENT

log = logging.getLogger(__name__)

LOCK_FILE = Path(__file__).resolve().parent / "reference-requirements.lock"
DIR_VARIABLE = "RAG_REFERENCE_ENV_DIR"
__all__ = ["COMPLETE_MARKER", "TORCH_REQUIREMENT", "ensure_reference_env", "environment_dir"]


def environment_key() -> str:
    return pinned_env.environment_key(LOCK_FILE)


def environment_dir() -> Path:
    return pinned_env.environment_dir("reference", LOCK_FILE, DIR_VARIABLE)


def _build(venv: Path) -> None:
    pinned_env.build(venv, LOCK_FILE, environment_key())


def ensure_reference_env() -> Path:
    """Return the reference env's Python, building the env from the lock if it is not there yet."""
    # `_build` is looked up at call time, so tests can replace it.
    return pinned_env.ensure(environment_dir(), lambda venv: _build(venv), "FlagEmbedding reference")


if __name__ == "__main__":  # python -m search_service.testing.reference_env: build it now
    logging.basicConfig(level=logging.INFO)
    log.info("reference env python: %s", ensure_reference_env())
