"""`search-service serve` as a real process on a fresh SQLite data directory, ready to query."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

BIN = Path(sys.executable).parent / "search-service"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_process(tmp_path: Path, embedder: str, *args: str, env: dict | None = None, timeout: float = 120):
    """Migrate, start `serve --port P *args`, wait for /readyz; yields (process, base URL, log path).
    The process is killed on the way out if the test left it running."""
    environment = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_EMBEDDER_MODEL": embedder,
                   "RAG_RERANKER_MODEL": "none", "RAG_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "RAG_AUTH": "off",
                   **(env or {})}
    subprocess.run([str(BIN), "migrate"], env=environment, check=True, capture_output=True)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(BIN), "serve", "--port", str(port), *args],
                                  env=environment, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            assert server.poll() is None, log.read_text()
            try:  # gunicorn listens at once; a request waits in the backlog until a worker loaded
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.time() < deadline, "server not ready: " + log.read_text()[-2000:]
            time.sleep(0.3)
        yield server, base, log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
