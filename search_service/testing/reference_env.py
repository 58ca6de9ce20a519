"""The FlagEmbedding reference environment: a cached venv built from `reference-requirements.lock`.

FlagEmbedding 1.4.2 only runs on transformers 4.46, while the service runs on transformers 5, so
reference scores are computed in a separate venv, through a subprocess that speaks JSON.

The venv lives in `$RAG_REFERENCE_ENV_DIR`, or `~/.cache/search-service/reference-<hash>`, where the
hash covers the lock file and the Python version, so editing the lock builds a fresh env. A file
lock keeps concurrent test runs (xdist workers, parallel CI jobs) from building the same env twice.
The parity tests (tests/reference/env.py) and benchmarks/rerank.py both build it from here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

LOCK_FILE = Path(__file__).resolve().parent / "reference-requirements.lock"
TORCH_REQUIREMENT = "torch==2.13.0"  # installed alone first; unpinned torch pulls a CUDA build
COMPLETE_MARKER = ".complete"
BUILD_TIMEOUT_S = 3600


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


if __name__ == "__main__":  # python -m search_service.testing.reference_env: build it now
    logging.basicConfig(level=logging.INFO)
    log.info("reference env python: %s", ensure_reference_env())
