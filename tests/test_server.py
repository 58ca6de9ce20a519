"""A real `search-service serve` process and a real worker process, driven over HTTP."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.documents import DOCUMENTS, PARAPHRASES

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent / "search-service"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def stack(tmp_path, minilm_path, tiny_reranker_dir):
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_EMBEDDER_MODEL": minilm_path,
        "RAG_RERANKER_MODEL": str(tiny_reranker_dir),
        "RAG_DEVICE": "cpu",
        "RAG_WORKER_POLL_SECONDS": "0.2",
        "HF_HUB_OFFLINE": "1",
        "RAG_AUTH": "off",  # loopback only
    }
    subprocess.run([str(BIN), "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = []
    for name, command in (("serve", ["serve", "--port", str(port)]), ("worker", ["worker"])):
        with open(logs / f"{name}.log", "w") as log:
            processes.append(subprocess.Popen([str(BIN), *command], env=env, stdout=log, stderr=subprocess.STDOUT))
    base = f"http://127.0.0.1:{port}"

    def ready():
        if processes[0].poll() is not None:
            pytest.fail((logs / "serve.log").read_text())
        try:
            return requests.get(f"{base}/readyz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(ready, 180, "the server to become ready")
    yield base
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def test_upload_index_and_search_over_http(stack, tiny_reranker):
    jobs = []
    assert requests.post(f"{stack}/v1/collections", json={"name": "docs"}, timeout=30).status_code == 201
    for name, text in DOCUMENTS.items():
        response = requests.post(f"{stack}/v1/collections/docs/documents", files={"file": (name, text.encode())}, timeout=30)
        assert response.status_code == 202
        jobs.append(response.headers["Location"])

    def all_indexed():
        states = [requests.get(f"{stack}{location}", timeout=10).json()["status"] for location in jobs]
        assert "failed" not in states, states
        return all(state == "indexed" for state in states)

    wait_for(all_indexed, 180, "the worker to index the uploads")

    query = PARAPHRASES["coffee.txt"]
    dense = requests.post(f"{stack}/v1/search", json={"collection": "docs", "query": query, "rerank": False}, timeout=30).json()
    assert dense["results"][0]["document_id"] == "coffee.txt"

    reranked = requests.post(f"{stack}/v1/search", json={"collection": "docs", "query": query, "top_k": 5}, timeout=30).json()
    assert reranked["reranked"] is True
    expected = tiny_reranker.score(query, [r["text"] for r in reranked["results"]])
    assert [r["rerank_score"] for r in reranked["results"]] == pytest.approx(expected, abs=1e-4)
    scores = [r["rerank_score"] for r in reranked["results"]]
    assert scores == sorted(scores, reverse=True)

    rerank = requests.post(f"{stack}/v1/rerank", json={"query": query, "documents": ["a", "b"]}, timeout=30)
    assert rerank.status_code == 200 and len(rerank.json()["results"]) == 2
    missing = requests.get(f"{stack}/v1/collections/missing", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"
