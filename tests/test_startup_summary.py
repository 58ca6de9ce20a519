"""`serve`'s start-up summary: auth, database (no password), models with device/dtype/runtime,
ingestion workers, playground; one JSON log stream with one summary and no duplicate lines."""

import json
import signal

import pytest

from search_service.cli.startup import startup_summary
from search_service.settings import Settings
from tests.support.serve_process import serve_process


@pytest.fixture
def sqlite_url(tmp_path):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    return url


def test_summary_names_every_part(make_services, sqlite_url, tiny_reranker):
    services = make_services(sqlite_url, tiny_reranker, host="127.0.0.1", port=8123)
    message, fields, warning = startup_summary(services.settings, services, server="waitress, 8 threads", ingest_workers=2)
    assert not warning
    assert "http://127.0.0.1:8123/" in message and "playground: http://127.0.0.1:8123/" in message
    assert "auth: off" in message  # make_services turns auth off; loopback: no warning
    assert f"database: {sqlite_url}" in message
    assert "embedder: " in message and "device cpu" in message and "dtype float32" in message
    assert "reranker tiny-reranker: family encoder, device cpu, dtype float32, runtime torch" in message
    assert "ingestion workers: 2" in message
    assert fields["rerankers"][0]["runtime"] == "torch" and fields["ingest_workers"] == 2


def test_no_password_and_a_warning_when_auth_is_off_off_loopback():
    settings = Settings(auth="off", host="0.0.0.0", reranker_model=None,
                        database_url="postgresql+psycopg://rag:s3cret@db.internal/rag")
    message, fields, warning = startup_summary(settings, server="gunicorn, 2 worker(s) x 8 threads")
    assert warning and "auth: OFF: RAG_AUTH is off and the server listens on 0.0.0.0" in message
    assert "s3cret" not in message and "s3cret" not in json.dumps(fields) and "rag:***@db.internal" in message
    assert "reranker: none" in message and "(per worker)" in message
    message, _, warning = startup_summary(Settings(auth="on", host="0.0.0.0"), server="waitress")
    assert not warning and "auth: on" in message


@pytest.mark.slow
def test_serve_logs_one_summary_as_json_lines(tmp_path, minilm_path):
    with serve_process(tmp_path, minilm_path, "--ingest-workers", "1") as (server, _base, log):
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # one format: every line is a JSON log record
    summaries = [r for r in records if "startup" in r]
    assert len(summaries) == 1 and summaries[0]["startup"]["ingest_workers"] == 1
    assert summaries[0]["startup"]["auth"] == "off"
    assert sum("serving on" in r["message"] for r in records) == 1
