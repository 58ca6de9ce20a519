"""`search-service serve --server gunicorn`: a real gunicorn (gthread) process; SIGTERM exits 0."""

from __future__ import annotations

import importlib.util
import json
import signal

import pytest
import requests
from click.testing import CliRunner

from search_service.cli import main
from tests.support.serve_process import serve_process


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
    args = ("--server", "gunicorn", "--threads", "2")
    with serve_process(tmp_path, minilm_path, *args, timeout=180) as (server, base, log):
        assert "playground" in requests.get(f"{base}/", timeout=10).text
        created = requests.post(f"{base}/v1/collections", json={"name": "g"}, timeout=30)
        assert created.status_code == 201, created.text
        embedded = requests.post(f"{base}/v1/embeddings", json={"input": ["a", "b"]}, timeout=60)
        assert embedded.status_code == 200 and len(embedded.json()["data"]) == 2
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, log.read_text()[-2000:]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/healthz", timeout=2)
        lines = log.read_text().splitlines()
        assert any("gthread" in line for line in lines)
        for line in lines:  # gunicorn's own lines too: one format on the stream (RAG_LOG_FORMAT=json)
            assert json.loads(line)["message"], line
