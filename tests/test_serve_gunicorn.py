"""`search-service serve --server gunicorn`: a real gunicorn (gthread) process; SIGTERM exits 0."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from search_service.cli import main

BIN = Path(sys.executable).parent / "search-service"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_workers_need_gunicorn_and_the_schema_is_checked_before_forking(tmp_path):
    env = {"RAG_DATA_DIR": str(tmp_path), "RAG_AUTH": "off"}
    result = CliRunner().invoke(main, ["serve", "--workers", "2"], env=env)
    assert result.exit_code == 1 and "--workers needs --server gunicorn" in result.output
    if importlib.util.find_spec("gunicorn") is not None:
        result = CliRunner().invoke(main, ["serve", "--server", "gunicorn", "--port", "1"], env=env)
        assert result.exit_code == 1 and "search-service migrate" in result.output  # no fork, no bind


@pytest.mark.slow
def test_gunicorn_serves_and_stops_on_sigterm(tmp_path, minilm_path):
    pytest.importorskip("gunicorn", reason="the gunicorn extra is not installed")
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_EMBEDDER_MODEL": minilm_path,
           "RAG_RERANKER_MODEL": "none", "RAG_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "RAG_AUTH": "off"}
    subprocess.run([str(BIN), "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(BIN), "serve", "--server", "gunicorn", "--port", str(port), "--threads", "2"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, log.read_text()
            try:  # the master listens at once; a request waits in the backlog until a worker loaded
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.time() < deadline, "gunicorn not ready: " + log.read_text()[-2000:]
            time.sleep(0.3)
        assert "playground" in requests.get(f"{base}/", timeout=10).text
        created = requests.post(f"{base}/v1/collections", json={"name": "g"}, timeout=30)
        assert created.status_code == 201, created.text
        embedded = requests.post(f"{base}/v1/embeddings", json={"input": ["a", "b"]}, timeout=60)
        assert embedded.status_code == 200 and len(embedded.json()["data"]) == 2
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, log.read_text()[-2000:]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/healthz", timeout=2)
        assert "gthread" in log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
