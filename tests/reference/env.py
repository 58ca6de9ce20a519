"""The FlagEmbedding reference environment: a cached venv built from `requirements.lock`.

FlagEmbedding 1.4.2 only runs on transformers 4.46, while the service runs on transformers 5, so
reference scores are computed in a separate venv, through a subprocess that speaks JSON.

The venv lives in `$RAG_REFERENCE_ENV_DIR`, or `~/.cache/search-service/reference-<hash>`, where the
hash covers the lock file and the Python version, so editing the lock builds a fresh env. A file
lock keeps concurrent test runs (xdist workers, parallel CI jobs) from building the same env twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
LOCK_FILE = HERE / "requirements.lock"
TORCH_REQUIREMENT = "torch==2.13.0"  # installed alone first; unpinned torch pulls a CUDA build
COMPLETE_MARKER = ".complete"
BUILD_TIMEOUT_S = 3600
SCRIPT_TIMEOUT_S = 900


def environment_key() -> str:
    digest = hashlib.sha256(LOCK_FILE.read_bytes())
    digest.update(f"py{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()[:16]


def environment_dir() -> Path:
    configured = os.environ.get("RAG_REFERENCE_ENV_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "search-service" / f"reference-{environment_key()}"


def _python_in(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _run_logged(command: list[str], log_path: Path) -> None:
    log.info("reference env: %s", " ".join(command))
    with log_path.open("a", encoding="utf-8") as log_file:
        log_file.write(f"\n$ {' '.join(command)}\n")
        log_file.flush()
        result = subprocess.run(
            command, check=False, stdout=log_file, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
        )
    if result.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"reference env step failed: {' '.join(command)}\n{tail}")


def _build(venv: Path) -> None:
    if venv.exists():
        log.warning("removing incomplete reference env at %s", venv)
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The log sits beside the venv, not in it, so it survives a failed build for inspection.
    log_path = venv.parent / f"{venv.name}.build.log"
    log_path.write_text(f"building {venv} from {LOCK_FILE}\n", encoding="utf-8")
    _run_logged([sys.executable, "-m", "venv", str(venv)], log_path)
    pip = [str(_python_in(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    _run_logged([*pip, TORCH_REQUIREMENT], log_path)
    _run_logged([*pip, "-r", str(LOCK_FILE)], log_path)
    (venv / COMPLETE_MARKER).write_text(environment_key(), encoding="utf-8")


def ensure_reference_env() -> Path:
    """Return the reference env's Python, building the env from the lock if it is not there yet."""
    venv = environment_dir()
    python = _python_in(venv)
    if (venv / COMPLETE_MARKER).is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv.parent / f"{venv.name}.lock")):
        # Another process may have finished the build while this one waited for the lock.
        if not (venv / COMPLETE_MARKER).is_file():
            log.info("building the FlagEmbedding reference env in %s (a few minutes)", venv)
            _build(venv)
    return python


def run_reference_script(script: str, payload: dict) -> object:
    """Run `tests/reference/<script>` in the reference env, JSON payload in, JSON result out."""
    python = ensure_reference_env()
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


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    log.info("reference env python: %s", ensure_reference_env())
