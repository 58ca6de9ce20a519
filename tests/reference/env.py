"""Reference scores from the reference envs (built by `search_service.testing.reference_env` and
`search_service.testing.mxbai_env`): scripts in this folder run there, JSON in, JSON out.
FlagEmbedding's env by default; score_mxbai.py in the mxbai-rerank env (`mxbai_reference`)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from search_service.testing import reference_env
from search_service.testing.mxbai_env import ensure_mxbai_env
from search_service.testing.reference_env import ensure_reference_env

HERE = Path(__file__).resolve().parent
SCRIPT_TIMEOUT_S = 900
__all__ = ["ensure_reference_env", "reference_env", "run_reference_script"]


def run_reference_script(script: str, payload: dict, python: Path | None = None) -> object:
    """Run `tests/reference/<script>` with `python` (default: the FlagEmbedding reference env's),
    JSON payload in, JSON result out."""
    python = python or ensure_reference_env()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    # The project's own path must not leak into the reference interpreter.
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(python), str(HERE / script)],
        check=False,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=SCRIPT_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{script} failed with code {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout)


def flag_scores_batch(checkpoint_dir: Path | str, jobs: Sequence[dict]) -> list[list[float]]:
    """FlagEmbedding scores for several jobs in one subprocess.

    Each job is `{"pairs": [[q, p], ...], "normalize": bool, **compute_score kwargs}`.
    """
    payload = {"checkpoint": str(checkpoint_dir), "jobs": list(jobs)}
    return run_reference_script("score_flag.py", payload)  # type: ignore[return-value]


def reference_scores(
    checkpoint_dir: Path | str, pairs: Sequence[Sequence[str]], normalize: bool = False, **kwargs
) -> list[float]:
    """`FlagReranker(checkpoint, use_fp16=False, devices=['cpu']).compute_score(pairs, ...)`."""
    job = {"pairs": [list(pair) for pair in pairs], "normalize": normalize, **kwargs}
    return flag_scores_batch(checkpoint_dir, [job])[0]


def transformers_reference(checkpoint_dir: Path | str, jobs: Sequence[dict]) -> list[object]:
    """Run raw-transformers jobs (the seed's snippet, tokenizer dumps) in the reference env.

    Jobs: `{"kind": "snippet", "pairs": ..., "max_length": 512}` -> scores;
    `{"kind": "tokenize", "pairs": ..., "max_length": m, "query_max_length": q}` -> token ids.
    """
    payload = {"checkpoint": str(checkpoint_dir), "jobs": list(jobs)}
    return run_reference_script("score_transformers.py", payload)  # type: ignore[return-value]


def mxbai_reference(checkpoint_dir: Path | str, jobs: Sequence[dict]) -> list[object]:
    """Run mxbai-rerank jobs (`MxbaiRerankV2` scores and inputs, see score_mxbai.py) in the
    mxbai-rerank reference env, one subprocess for all of them."""
    payload = {"checkpoint": str(checkpoint_dir), "jobs": list(jobs)}
    return run_reference_script("score_mxbai.py", payload, ensure_mxbai_env())  # type: ignore[return-value]
