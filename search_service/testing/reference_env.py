"""Reference environments: cached venvs, each built from a pinned lock file, for reference code
that cannot run beside the service's transformers 5.

- FlagEmbedding 1.4.2 (`reference-requirements.lock`): it only runs on transformers 4.46.
- mxbai-rerank 0.1.6 (`mxbai-reference-requirements.lock`): it calls `prepare_for_model`, which
  transformers 5 removed, and needs transformers >= 4.49, so not the FlagEmbedding env either.

Reference scores are computed in the venv, through a subprocess that speaks JSON
(tests/reference/env.py). A venv lives in its `ReferenceEnv.variable` directory when that is set
(`$RAG_REFERENCE_ENV_DIR` for FlagEmbedding), else in `~/.cache/search-service/<prefix>-<hash>`,
where the hash covers the lock file and the Python version, so editing the lock builds a fresh
env. A file lock keeps concurrent test runs (xdist workers, parallel CI jobs) from building the
same env twice. torch is installed first, on its own (`TORCH_REQUIREMENT`).

    python -m search_service.testing.reference_env [flag|mxbai]   # build one now (default: flag)
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
LOCK_FILE = HERE / "reference-requirements.lock"  # FlagEmbedding's
TORCH_REQUIREMENT = "torch==2.13.0"  # installed alone first; unpinned torch pulls a CUDA build
COMPLETE_MARKER = ".complete"
BUILD_TIMEOUT_S = 3600


@dataclass(frozen=True)
class ReferenceEnv:
    """One reference venv: what it is for, its lock file, its cache prefix, its override."""

    label: str
    lock_name: str | None  # a file beside this module; None: `LOCK_FILE` (tests patch it)
    prefix: str
    variable: str

    @property
    def lock_file(self) -> Path:
        return LOCK_FILE if self.lock_name is None else HERE / self.lock_name

    def key(self) -> str:
        digest = hashlib.sha256(self.lock_file.read_bytes())
        digest.update(f"py{sys.version_info.major}.{sys.version_info.minor}".encode())
        return digest.hexdigest()[:16]

    def directory(self) -> Path:
        configured = os.environ.get(self.variable)
        if configured:
            return Path(configured).expanduser()
        return Path.home() / ".cache" / "search-service" / f"{self.prefix}-{self.key()}"

    def ensure(self) -> Path:
        """The env's Python, building the env from the lock if it is not there yet."""
        venv = self.directory()
        python = _python_in(venv)
        if (venv / COMPLETE_MARKER).is_file():
            return python
        venv.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(venv.parent / f"{venv.name}.lock")):
            # Another process may have finished the build while this one waited for the lock.
            if not (venv / COMPLETE_MARKER).is_file():
                log.info("building the %s reference env in %s (a few minutes)", self.label, venv)
                _build(venv, self)
        return python


FLAG = ReferenceEnv("FlagEmbedding", None, "reference", "RAG_REFERENCE_ENV_DIR")
MXBAI = ReferenceEnv(
    "mxbai-rerank", "mxbai-reference-requirements.lock", "mxbai-reference",
    "RAG_MXBAI_REFERENCE_ENV_DIR",
)
ENVIRONMENTS = {"flag": FLAG, "mxbai": MXBAI}


def environment_key() -> str:
    return FLAG.key()


def environment_dir() -> Path:
    return FLAG.directory()


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


def _build(venv: Path, environment: ReferenceEnv = FLAG) -> None:
    if venv.exists():
        log.warning("removing incomplete reference env at %s", venv)
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_file = environment.lock_file
    # The log sits beside the venv, not in it, so it survives a failed build for inspection.
    log_path = venv.parent / f"{venv.name}.build.log"
    log_path.write_text(f"building {venv} from {lock_file}\n", encoding="utf-8")
    _run_logged([sys.executable, "-m", "venv", str(venv)], log_path)
    pip = [str(_python_in(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    _run_logged([*pip, TORCH_REQUIREMENT], log_path)
    _run_logged([*pip, "-r", str(lock_file)], log_path)
    (venv / COMPLETE_MARKER).write_text(environment.key(), encoding="utf-8")


def ensure_reference_env() -> Path:
    """The FlagEmbedding reference env's Python, building it if it is not there yet."""
    return FLAG.ensure()


def ensure_mxbai_reference_env() -> Path:
    """The mxbai-rerank reference env's Python, building it if it is not there yet."""
    return MXBAI.ensure()


if __name__ == "__main__":  # python -m search_service.testing.reference_env [flag|mxbai]
    logging.basicConfig(level=logging.INFO)
    chosen = ENVIRONMENTS[sys.argv[1] if len(sys.argv) > 1 else "flag"]
    log.info("%s reference env python: %s", chosen.label, chosen.ensure())
