"""Cached virtual environments built from a lock file, for tools whose pins clash with ours.

FlagEmbedding (transformers 4.46) and Infinity (numpy<2, sentence-transformers<4) cannot share the
service's venv, so each gets its own, built once from its lock file and reused by every test run:

- the venv lives in `$<dir_variable>`, or `~/.cache/search-service/<name>-<hash>`, where the hash
  covers the lock file and the Python version, so editing the lock builds a fresh env;
- torch is installed first, alone and pinned, so pip takes the CPU wheel instead of a CUDA build;
- a file lock keeps concurrent test runs from building the same env twice, and a marker file
  written last tells a finished build from an interrupted one (which is removed and rebuilt).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

TORCH_REQUIREMENT = "torch==2.13.0"
COMPLETE_MARKER = ".complete"
BUILD_TIMEOUT_S = 3600


def environment_key(lock_file: Path) -> str:
    digest = hashlib.sha256(lock_file.read_bytes())
    digest.update(f"py{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()[:16]


def environment_dir(name: str, lock_file: Path, dir_variable: str) -> Path:
    configured = os.environ.get(dir_variable)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "search-service" / f"{name}-{environment_key(lock_file)}"


def python_in(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _run_logged(command: list[str], log_path: Path) -> None:
    log.info("pinned env: %s", " ".join(command))
    with log_path.open("a", encoding="utf-8") as log_file:
        log_file.write(f"\n$ {' '.join(command)}\n")
        log_file.flush()
        result = subprocess.run(
            command, check=False, stdout=log_file, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
        )
    if result.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"pinned env step failed: {' '.join(command)}\n{tail}")


def build(venv: Path, lock_file: Path, key: str) -> None:
    """Create `venv` from scratch: torch alone first, then every line of the lock file."""
    if venv.exists():
        log.warning("removing incomplete env at %s", venv)
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The log sits beside the venv, not in it, so it survives a failed build for inspection.
    log_path = venv.parent / f"{venv.name}.build.log"
    log_path.write_text(f"building {venv} from {lock_file}\n", encoding="utf-8")
    _run_logged([sys.executable, "-m", "venv", str(venv)], log_path)
    pip = [str(python_in(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    _run_logged([*pip, TORCH_REQUIREMENT], log_path)
    _run_logged([*pip, "-r", str(lock_file)], log_path)
    (venv / COMPLETE_MARKER).write_text(key, encoding="utf-8")


def ensure(venv: Path, build_env: Callable[[Path], None], what: str) -> Path:
    """The env's Python, calling `build_env(venv)` first (under a file lock) if it is not built."""
    python = python_in(venv)
    if (venv / COMPLETE_MARKER).is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv.parent / f"{venv.name}.lock")):
        # Another process may have finished the build while this one waited for the lock.
        if not (venv / COMPLETE_MARKER).is_file():
            log.info("building the %s env in %s (a few minutes, once)", what, venv)
            build_env(venv)
    return python


def ensure_from_lock(name: str, lock_file: Path, dir_variable: str, what: str) -> Path:
    """The Python of the env `name` built from `lock_file` (see `environment_dir`), built first
    if it is not there yet."""
    key = environment_key(lock_file)
    return ensure(
        environment_dir(name, lock_file, dir_variable),
        lambda venv: build(venv, lock_file, key),
        what,
    )
