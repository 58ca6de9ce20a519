"""Request ids and Prometheus metrics (the log formats are logs.py).

Every request gets an id (the client's `X-Request-ID` when it is a sane token, else a new one),
echoed in the response's `X-Request-ID` and attached to every log line written while serving it.
Metrics live in a registry per app (tests build many apps); `/metrics` (api/metrics.py) renders it.
Job counts and index sizes are read from the database at scrape time, so they are right in every
process, whoever ingested.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)
access_log = logging.getLogger("search_service.access")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    def __init__(self, services):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rag_http_requests", "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds", "HTTP request latency by endpoint and method.",
            ["endpoint", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "rag_http_requests_in_flight", "Requests being served now (the request queue depth).",
            registry=self.registry,
        )
        self.stages = Histogram(
            "rag_stage_duration_seconds",
            "Per-stage latency of searches and embeddings (embed, search = FAISS, sparse, fusion, "
            "db, rerank, context).",
            ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.rerank_batch = Histogram(
            "rag_rerank_batch_size", "Passages scored per rerank call (/v1/rerank and /v1/search).",
            ["endpoint"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.rate_limited = Counter(
            "rag_rate_limited", "Requests refused with 429.", registry=self.registry,
        )
        self.forward_batch = Histogram(
            "rag_rerank_forward_batch_size",
            "Pairs per reranker forward batch formed by the batch scheduler (RAG_BATCHING=on), "
            "across concurrent requests.",
            ["model"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.forward_batch_requests = Histogram(
            "rag_rerank_forward_batch_requests", "Requests sharing each reranker forward batch.",
            ["model"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.forward_seconds = Histogram(
            "rag_rerank_forward_seconds",
            "Seconds per reranker forward batch of the batch scheduler (collate, forward, scores).",
            ["model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.forward_tokens = Counter(
            "rag_rerank_forward_tokens",
            "Tokens in the reranker forward batches of the batch scheduler: `real` (the pairs' own) "
            "and `padded` (rows x longest row; padded / real is the padding overhead, which a packed "
            "CPU forward does not compute).",
            ["model", "kind"], registry=self.registry,
        )
        self.context_truncated = Counter(
            "rag_context_truncated_passages",
            "Passages cut to fit a search's context budget (their citation says `truncated`).",
            registry=self.registry,
        )
        self.registry.register(DatabaseCollector(services))
        self.registry.register(SchedulerCollector(services))
        self.registry.register(RemoteCollector(services))
        self.rerank_fallbacks = Counter(
            "rag_rerank_fallbacks",
            "Searches answered in retrieval order because the remote reranker gave no scores and "
            "the request asked for rerank_fallback: dense, by the error it would have had.",
            ["code"], registry=self.registry,
        )
        for scheduler in getattr(services, "schedulers", ()):
            scheduler.observers.append(self.observe_batch)

    def observe_batch(self, info) -> None:
        self.forward_batch.labels(info.model).observe(info.rows)
        self.forward_batch_requests.labels(info.model).observe(info.requests)
        self.forward_seconds.labels(info.model).observe(info.seconds)
        self.forward_tokens.labels(info.model, "real").inc(info.tokens)
        self.forward_tokens.labels(info.model, "padded").inc(info.padded_tokens)

    def observe_stages(self, timings_ms: dict) -> None:
        for stage, ms in timings_ms.items():
            # timings_ms also carries the rerank cache's hit rate, which is not a duration.
            if isinstance(ms, (int, float)) and not stage.startswith("rerank_cache_"):
                self.stages.labels(stage).observe(ms / 1000)


class DatabaseCollector:
    """Gauges read at scrape time: jobs by state, documents/chunks per collection, loaded vectors."""

    def __init__(self, services):
        self.services = services

    def describe(self):
        return []

    def collect(self):
        from sqlalchemy import func, select

        from search_service.store import collections as store
        from search_service.store.models import JOB_STATES, Job

        jobs = GaugeMetricFamily("rag_jobs", "Ingestion jobs by state.", labels=["state"])
        documents = GaugeMetricFamily("rag_collection_documents", "Documents per collection.", labels=["collection"])
        chunks = GaugeMetricFamily(
            "rag_index_size", "Vectors (chunks) per collection in the database.", labels=["collection"]
        )
        loaded = GaugeMetricFamily(
            "rag_index_loaded_vectors", "Vectors held by this process's in-memory indexes.", labels=["collection"]
        )
        try:
            with self.services.database.session() as session:
                counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                rows = store.list_collections(session)
        except Exception:
            log.exception("metrics: cannot read the database")
            return
        for state in JOB_STATES:
            jobs.add_metric([state], counts.get(state, 0))
        names = {}
        for collection, n_documents, n_chunks in rows:
            names[collection.id] = collection.name
            documents.add_metric([collection.name], n_documents)
            chunks.add_metric([collection.name], n_chunks)
        for collection_id, count in self.services.indexes.loaded().items():
            if collection_id in names:
                loaded.add_metric([names[collection_id]], count)
        yield from (jobs, documents, chunks, loaded)


class SchedulerCollector:
    """The reranker batch queues, read at scrape time: pairs queued, requests refused (429)."""

    def __init__(self, services):
        self.services = services

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        queued = GaugeMetricFamily(
            "rag_rerank_queue_pairs", "Pairs waiting for (or in) a reranker batch.", labels=["model"]
        )
        refused = CounterMetricFamily(
            "rag_rerank_overloaded", "Requests refused with 429 overloaded (RAG_RERANK_QUEUE_MAX).",
            labels=["model"],
        )
        for scheduler in getattr(self.services, "schedulers", ()):
            queued.add_metric([scheduler.name], scheduler.queued)
            refused.add_metric([scheduler.name], scheduler.rejected)
        yield from (queued, refused)


class RemoteCollector:
    """Remote engines (remote/client.py), read at scrape time: calls by outcome, retries, the
    circuit breaker's state (0 closed, 1 half-open, 2 open) and how often it opened."""

    def __init__(self, services):
        self.services = services

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        labels = ["kind", "name"]
        calls = CounterMetricFamily(
            "rag_remote_calls", "Calls to remote engines by outcome: ok, rejected (4xx), and the "
            "failures connect, timeout, server_error, bad_response, breaker_open.", labels=[*labels, "outcome"],
        )
        retries = CounterMetricFamily("rag_remote_retries", "Attempts retried after a connection error, 5xx or 429.",
                                      labels=labels)
        state = GaugeMetricFamily("rag_remote_breaker_state",
                                  "Circuit breaker per engine: 0 closed, 1 half-open, 2 open.", labels=labels)
        opened = CounterMetricFamily("rag_remote_breaker_opened", "Times the circuit breaker opened.", labels=labels)
        clients = getattr(self.services, "remote_clients", None)
        for kind, name, client in (clients() if clients else []):
            numbers = client.metrics()
            for outcome, count in numbers["calls"].items():
                calls.add_metric([kind, name, outcome], count)
            retries.add_metric([kind, name], numbers["retries"])
            state.add_metric([kind, name], numbers["breaker_state"])
            opened.add_metric([kind, name], numbers["breaker_opened"])
        yield from (calls, retries, state, opened)


def _start() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()
    metrics = _metrics()
    if metrics is not None:
        metrics.in_flight.inc()
        g.in_flight = True


def _metrics() -> Metrics | None:
    from flask import current_app

    return current_app.extensions.get("metrics")


def _finish(response):
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.endpoint or "unmatched"
    metrics = _metrics()
    if metrics is not None:
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        metrics.latency.labels(endpoint, request.method).observe(elapsed)
        if response.status_code == 429:
            metrics.rate_limited.inc()
        if response.status_code == 200 and endpoint in ("search.search", "search.rerank"):
            _observe_search(metrics, endpoint, response)
    principal = g.get("principal")
    access_log.info(
        "%s %s %s", request.method, request.path, response.status_code,
        extra={
            "request_id": g.get("request_id"),
            "method": request.method, "path": request.path, "status": response.status_code,
            "endpoint": endpoint, "duration_ms": round(elapsed * 1000, 3),
            "key": principal.prefix if principal is not None else None,
            "remote_addr": request.remote_addr,
        },
    )
    return response


def _observe_search(metrics: Metrics, endpoint: str, response) -> None:
    if endpoint == "search.search":
        body = g.get("search_result") or {}
        metrics.observe_stages(body.get("timings_ms") or {})
        citations = (body.get("context") or {}).get("citations") or []
        metrics.context_truncated.inc(sum(1 for citation in citations if citation.get("truncated")))
        cache = body.get("cache") or {}
        scored = (cache.get("rerank_hits") or 0) + (cache.get("rerank_misses") or 0)
        if body.get("reranked") and scored:
            metrics.rerank_batch.labels(endpoint).observe(scored)
        if body.get("rerank_fallback"):
            metrics.rerank_fallbacks.labels(body["rerank_fallback"]["code"]).inc()
    else:
        parsed = g.get("body")  # the gate's parse (api/body.py); never parsed twice
        sent = parsed.json if parsed is not None else None
        documents = sent.get("documents") if isinstance(sent, dict) else None
        if isinstance(documents, list):
            metrics.rerank_batch.labels(endpoint).observe(len(documents))


def _teardown(_exc) -> None:
    if g.pop("in_flight", False):
        metrics = _metrics()
        if metrics is not None:
            metrics.in_flight.dec()


def init_app(app: Flask, services) -> None:
    """Request ids and metrics; call before the other before_request hooks so they are timed."""
    app.extensions["metrics"] = Metrics(services)
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_teardown)
