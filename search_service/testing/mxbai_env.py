"""The mxbai-rerank reference environment: a cached venv built from
`mxbai-reference-requirements.lock` (see `pinned_env`).

mxbai-rerank 0.1.6 (`MxbaiRerankV2`, the reference of the `mxbai-rerank` family) needs
transformers >= 4.49 and calls `tokenizer.prepare_for_model`, which transformers 5 removed: it
runs neither in the service's venv nor in FlagEmbedding's (transformers 4.46), so it gets its own,
on transformers 4.57.6, in `$RAG_MXBAI_REFERENCE_ENV_DIR` or
`~/.cache/search-service/mxbai-reference-<hash>`. The parity tests run
tests/reference/score_mxbai.py there (tests/reference/env.py: `mxbai_reference`).

    python -m search_service.testing.mxbai_env      # build it now
"""

from __future__ import annotations

import logging
from pathlib import Path

from search_service.testing import pinned_env

log = logging.getLogger(__name__)

LOCK_FILE = Path(__file__).resolve().parent / "mxbai-reference-requirements.lock"
DIR_VARIABLE = "RAG_MXBAI_REFERENCE_ENV_DIR"


def environment_dir() -> Path:
    return pinned_env.environment_dir("mxbai-reference", LOCK_FILE, DIR_VARIABLE)


def ensure_mxbai_env() -> Path:
    """The mxbai-rerank venv's Python, building the venv from the lock file the first time."""
    return pinned_env.ensure_from_lock("mxbai-reference", LOCK_FILE, DIR_VARIABLE, "mxbai-rerank")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    log.info("mxbai-rerank env python: %s", ensure_mxbai_env())
