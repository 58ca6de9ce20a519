"""Infinity (`infinity-emb`, michaelfeil/infinity) in its own cached venv, and a server launcher.

The remote-engine tests run the real Infinity on CPU as the peer a `remote` reranker or embedder
talks to. Infinity pins numpy<2, sentence-transformers<4 and click<8.2, so it cannot live in the
service's venv: it gets one built from `infinity-requirements.lock` (see `pinned_env`), in
`$RAG_INFINITY_ENV_DIR` or `~/.cache/search-service/infinity-<hash>`. Its usage telemetry is off.

    with infinity_server({"tiny": checkpoint_dir, "minilm": minilm_path()}) as url:
        requests.post(f"{url}/rerank", json={"model": "tiny", "query": ..., "documents": [...]})
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

from search_service.testing import pinned_env

log = logging.getLogger(__name__)

LOCK_FILE = Path(__file__).resolve().parent / "infinity-requirements.lock"
DIR_VARIABLE = "RAG_INFINITY_ENV_DIR"
START_TIMEOUT_S = 240
# Infinity sends anonymous usage statistics unless told not to; the tests must never phone home.
QUIET_ENV = {"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}


def environment_dir() -> Path:
    return pinned_env.environment_dir("infinity", LOCK_FILE, DIR_VARIABLE)


def ensure_infinity_env() -> Path:
    """The Infinity venv's Python, building the venv from the lock file the first time."""
    return pinned_env.ensure_from_lock("infinity", LOCK_FILE, DIR_VARIABLE, "Infinity")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(models: Mapping[str, str | Path], port: int, batch_size: int = 32) -> list[str]:
    """`infinity_emb v2` serving each checkpoint under its name, on CPU, bound to localhost."""
    executable = ensure_infinity_env().parent / "infinity_emb"
    command = [str(executable), "v2"]
    for name, path in models.items():
        command += ["--model-id", str(path), "--served-model-name", name]
    return command + [
        "--engine", "torch", "--device", "cpu", "--batch-size", str(batch_size),
        "--no-model-warmup", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    state = f"exited with {process.returncode}" if process.poll() is not None else "not ready"
    raise RuntimeError(f"Infinity {state} after {timeout_s:.0f} s; its log ends:\n{tail}")


@contextmanager
def infinity_server(
    models: Mapping[str, str | Path], *, batch_size: int = 32, timeout_s: float = START_TIMEOUT_S
) -> Iterator[str]:
    """Run Infinity serving `models` ({served name: checkpoint dir}); yields its base URL."""
    command = server_command(models, port := free_port(), batch_size)
    env = {**os.environ, **QUIET_ENV}
    env.pop("PYTHONPATH", None)  # the service's packages must not leak into Infinity's interpreter
    with tempfile.TemporaryDirectory(prefix="infinity-") as workdir:
        log_path = Path(workdir) / "infinity.log"
        with log_path.open("w", encoding="utf-8") as log_file:
            process = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log_path, timeout_s)
            log.info("Infinity serving %s at %s", ", ".join(models), url)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":  # python -m search_service.testing.infinity_env: build it now
    logging.basicConfig(level=logging.INFO)
    log.info("Infinity env python: %s", ensure_infinity_env())
