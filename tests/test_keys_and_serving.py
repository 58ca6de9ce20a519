"""`search-service keys ...` over SQLite and PostgreSQL; `serve`: startup warning and graceful SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from search_service.auth import is_loopback, startup_warning
from search_service.cli import main
from search_service.settings import Settings
from tests.support.serve_process import serve_process

BIN = Path(sys.executable).parent / "search-service"


def invoke(env, *args):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_keys_create_list_revoke(migrated_url, tmp_path):
    from search_service.store.db import Database
    from search_service.store.keys import verify_key

    env = {"RAG_DATABASE_URL": migrated_url, "RAG_DATA_DIR": str(tmp_path)}
    created = invoke(env, "keys", "create", "--name", "chat-frontend", "--role", "read", "--collections", "handbook,faq")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("rag_") and len(key.split("_", 2)[2]) == 43
    prefix = key.split("_")[1]
    listed = invoke(env, "keys", "list")
    assert prefix in listed.output and "chat-frontend" in listed.output and "faq,handbook" in listed.output
    assert key.split("_", 2)[2] not in listed.output  # the secret is never shown again
    database = Database(migrated_url)
    try:
        with database.session() as session:
            principal = verify_key(session, key)
            assert principal.role == "read" and principal.collections == {"handbook", "faq"}
        assert invoke(env, "keys", "revoke", prefix).exit_code == 0
        with database.session() as session:
            assert verify_key(session, key) is None
    finally:
        database.dispose()
    assert "revoked" in invoke(env, "keys", "list").output
    assert invoke(env, "keys", "revoke", "ffffffffffff").exit_code == 1
    bad = invoke(env, "keys", "create", "--name", "x", "--role", "read", "--collections", "*,a")
    assert bad.exit_code == 1


def test_startup_warning_only_when_auth_is_off_off_loopback():
    assert startup_warning(Settings(auth="off", host="0.0.0.0")) is not None
    assert startup_warning(Settings(auth="off", host="127.0.0.1")) is None
    assert startup_warning(Settings(auth="off", host="::1")) is None
    assert startup_warning(Settings(auth="on", host="0.0.0.0")) is None
    assert is_loopback("localhost") and not is_loopback("10.0.0.1")


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests(tmp_path, minilm_path):
    env = {"RAG_MAX_EMBEDDING_INPUTS": "5000", "RAG_SHUTDOWN_TIMEOUT_SECONDS": "120"}
    with serve_process(tmp_path, minilm_path, "--host", "0.0.0.0", "--threads", "2", env=env) as (server, base, log):
        assert "RAG_AUTH is off" in log.read_text()  # 0.0.0.0 without auth: warned
        texts = [f"passage {i}: " + "the giant panda eats bamboo in the mountains of China " * 20 for i in range(400)]
        result = {}

        def slow_request():
            response = requests.post(f"{base}/v1/embeddings", json={"input": texts}, timeout=300)
            result["status"], result["count"] = response.status_code, len(response.json()["data"])

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(1.5)  # the request is being served
        assert "status" not in result, "the request finished too fast to test a drain"
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(requests.ConnectionError):  # no new connections once draining
            requests.get(f"{base}/healthz", timeout=2)
        worker.join(timeout=300)
        assert result == {"status": 200, "count": len(texts)}  # the in-flight request completed
        assert server.wait(timeout=60) == 0


def test_serve_with_ingest_workers_indexes_uploads(tmp_path, minilm_path):
    env = {"RAG_WORKER_POLL_SECONDS": "0.2"}
    with serve_process(tmp_path, minilm_path, "--ingest-workers", "1", env=env) as (server, base, log):
        deadline = time.time() + 120
        assert requests.post(f"{base}/v1/collections", json={"name": "notes"}, timeout=30).status_code == 201
        upload = requests.post(f"{base}/v1/collections/notes/documents", timeout=30,
                               files={"file": ("lighthouse.md", b"# Lighthouse\n\nThe keeper trims the lamp wick at dusk.")})
        assert upload.status_code == 202, upload.text
        job_url = f"{base}/v1/jobs/{upload.json()['job_id']}"
        while (status := requests.get(job_url, timeout=10).json()["status"]) not in ("indexed", "failed"):
            assert time.time() < deadline + 60, f"job stuck in {status}"
            time.sleep(0.2)
        assert status == "indexed"  # no separate `search-service worker` process was started
        hits = requests.post(f"{base}/v1/search", json={"collection": "notes", "query": "who trims the lamp wick?"},
                             timeout=30).json()["results"]
        assert hits[0]["document_id"] == "lighthouse.md"
        ready = requests.get(f"{base}/readyz", timeout=10).json()
        assert ready["ingest_workers"] == {"configured": 1, "alive": 1, "restarts": 0}
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert "ingestion workers: 1" in log.read_text()  # the start-up summary


def test_ingest_workers_refused_with_gunicorn():
    result = CliRunner().invoke(main, ["serve", "--server", "gunicorn", "--ingest-workers", "1"])
    assert result.exit_code != 0 and "--ingest-workers runs with waitress only" in result.output
