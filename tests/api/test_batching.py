"""Dynamic batching through the API: 429 `overloaded` when the queue is full, and concurrent
`/v1/search` + `/v1/rerank` clients on a real waitress server get the unbatched scores."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ingestion.pipeline import SourceDocument
from tests.support.documents import DOCUMENTS

DOCS = ["Pandas eat bamboo.", "Paris is the capital of France.", "", "Bears live in forests.", "x"]


@pytest.fixture
def sqlite_url(tmp_path):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'batching.db'}"
    migrate(url)
    return url


def _wait_for(condition, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_full_queue_answers_429_overloaded(app_factory, sqlite_url, tiny_reranker):
    app = app_factory(sqlite_url, tiny_reranker, rerank_queue_max=8, batch_max_delay_ms=0)
    services = app.extensions["search_service"]
    (scheduler,) = services.schedulers
    body = {"query": "what is panda?", "documents": DOCS, "raw_scores": True}
    lock = tiny_reranker._forward_lock
    lock.acquire()  # a slow model: the first batch holds the worker
    try:
        first = ThreadPoolExecutor(max_workers=1).submit(
            lambda: app.test_client().post("/v1/rerank", json=body)
        )
        _wait_for(lambda: scheduler.queued == len(DOCS))
        refused = app.test_client().post("/v1/rerank", json=body)  # 5 + 5 > 8
        assert refused.status_code == 429
        assert refused.get_json()["error"]["code"] == "overloaded"
        assert "RAG_RERANK_QUEUE_MAX" in refused.get_json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        lock.release()
    served = first.result(timeout=30)
    assert served.status_code == 200
    direct = tiny_reranker.score("what is panda?", DOCS)
    by_index = {item["index"]: item["relevance_score"] for item in served.get_json()["results"]}
    assert [by_index[i] for i in range(len(DOCS))] == pytest.approx(direct, abs=1e-5)
    assert app.test_client().post("/v1/rerank", json=body).status_code == 200  # room again
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'rag_rerank_overloaded_total{model="tiny-reranker"} 1.0' in metrics
    assert 'rag_rerank_queue_pairs{model="tiny-reranker"} 0.0' in metrics
    assert "rag_rate_limited_total 1.0" in metrics  # every 429 counts there too
    assert 'rag_rerank_forward_batch_size_count{model="tiny-reranker"}' in metrics
    # Two requests were scored, each of the distinct DOCS once: their own tokens, and the padding.
    pairs = [("what is panda?", doc) for doc in dict.fromkeys(DOCS)]
    real = 2 * sum(len(f) for f in tiny_reranker.tokenize(pairs, tiny_reranker.max_length))
    tokens = {
        kind: float(value)
        for kind, value in re.findall(
            r'^rag_rerank_forward_tokens_total{kind="(\w+)",model="tiny-reranker"} (\S+)$',
            metrics,
            re.MULTILINE,
        )
    }
    assert tokens["real"] == real and tokens["padded"] >= real
    services.close()
    assert not scheduler._thread.is_alive()


def test_batching_off_scores_directly(app_factory, sqlite_url, tiny_reranker):
    app = app_factory(sqlite_url, tiny_reranker, batching="off")
    services = app.extensions["search_service"]
    assert services.schedulers == []
    assert services.rerankers.pick(None) is tiny_reranker
    response = app.test_client().post("/v1/rerank", json={"query": "q", "documents": DOCS})
    assert response.status_code == 200


class LiveServer:
    """The production server's waitress, on a free port, in a thread."""

    def __init__(self, app, threads: int = 8):
        import waitress

        self.server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
        self.base = f"http://127.0.0.1:{self.server.effective_port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        server = self.server
        while not self._stop.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1)

    def __enter__(self) -> str:
        self._thread.start()
        return self.base

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        for channel in list(self.server._map.values()):
            channel.close()


@pytest.mark.parametrize("read_back", ["direct", "deferred"])
def test_concurrent_clients_on_a_real_server(app_factory, sqlite_url, tiny_reranker, read_back):
    """`deferred`: the model's outputs are read back later, as on a GPU, so the batch worker keeps
    one batch in flight (RAG_BATCH_PIPELINE); scores and batching must not change."""
    if read_back == "deferred":
        tiny_reranker.defers_results = lambda: True
    app = app_factory(sqlite_url, tiny_reranker, rerank_cache_size=0, batch_max_delay_ms=50)
    services = app.extensions["search_service"]
    assert services.schedulers[0].pipeline == (read_back == "deferred")
    services.ingestion.ingest(
        "docs",
        [
            SourceDocument(external_id=name, data=text.encode(), filename=name)
            for name, text in DOCUMENTS.items()
        ],
    )
    queries = ["what do pandas eat?", "capital of France", "how do rerankers work?", "熊猫"] * 4

    def rerank(session, query):
        body = {"query": query, "documents": DOCS, "raw_scores": True}
        response = session.post(f"{base}/v1/rerank", json=body, timeout=60)
        assert response.status_code == 200, response.text
        scores = {item["index"]: item["relevance_score"] for item in response.json()["results"]}
        return [scores[i] for i in range(len(DOCS))]

    def search(session, query):
        body = {"collection": "docs", "query": query, "candidates": 20}
        response = session.post(f"{base}/v1/search", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return [(r["text"], r["rerank_score"]) for r in response.json()["results"]]

    calls = [(rerank, query) for query in queries] + [(search, query) for query in queries[:8]]
    barrier = threading.Barrier(len(calls))

    def client(call):
        function, query = call
        with requests.Session() as session:
            barrier.wait()
            return function(session, query)

    with LiveServer(app) as base, ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(client, calls))
        metrics = requests.get(f"{base}/metrics", timeout=30).text

    for (function, query), result in zip(calls, results, strict=True):
        if function is rerank:
            assert result == pytest.approx(tiny_reranker.score(query, DOCS), abs=1e-5), query
        else:
            assert result, query
            texts = [text for text, _ in result]
            direct = tiny_reranker.score(query, texts)
            assert [score for _, score in result] == pytest.approx(direct, abs=1e-5), query
    batches = _histogram(metrics, "rag_rerank_forward_batch_requests")
    assert batches["count"] < len(calls)  # fewer forward passes than requests
    assert batches["count"] > batches["1.0"]  # some batch held pairs of several requests


def _histogram(text: str, name: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        match = re.match(rf'{name}_bucket{{.*le="([^"]+)".*}} (\S+)$', line)
        if match:
            values[match.group(1)] = float(match.group(2))
        match = re.match(rf"{name}_count{{.*}} (\S+)$", line)
        if match:
            values["count"] = float(match.group(1))
    return values


def test_batching_settings_from_the_environment():
    from search_service.errors import ConfigurationError
    from search_service.settings import Settings

    defaults = Settings.from_env({})
    assert (defaults.batching, defaults.batch_max_delay_ms, defaults.rerank_queue_max) == (
        "on",
        5.0,
        2048,
    )
    assert defaults.batch_token_budget is None and defaults.batch_max_size is None  # by device
    assert defaults.batch_pipeline == "on"
    settings = Settings.from_env(
        {
            "RAG_BATCHING": "off",
            "RAG_BATCH_MAX_DELAY_MS": "2.5",
            "RAG_BATCH_TOKEN_BUDGET": "4096",
            "RAG_BATCH_MAX_SIZE": "auto",
            "RAG_RERANK_QUEUE_MAX": "100",
            "RAG_BATCH_PIPELINE": "false",
        }
    )
    assert (settings.batching, settings.batch_max_delay_ms, settings.batch_token_budget) == (
        "off",
        2.5,
        4096,
    )
    assert settings.batch_max_size is None and settings.rerank_queue_max == 100
    assert settings.batch_pipeline == "off"
    for name, raw in (
        ("RAG_BATCHING", "maybe"),
        ("RAG_BATCH_PIPELINE", "sometimes"),
        ("RAG_BATCH_MAX_DELAY_MS", "-1"),
        ("RAG_BATCH_TOKEN_BUDGET", "0"),
        ("RAG_RERANK_QUEUE_MAX", "0"),
    ):
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({name: raw})
