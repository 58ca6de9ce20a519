#!/usr/bin/env python
"""Where the time of one `/v1/search` goes: embed, FAISS, rerank, DB, and the rest (HTTP, JSON).

    .venv/bin/python benchmarks/latency.py --size base --requests 200
    .venv/bin/python benchmarks/latency.py --size large --device cuda --requests 500
    .venv/bin/python benchmarks/latency.py --size tiny --requests 20                 # a smoke run

One client sends `--requests` searches one after another (after `--warmup` ones) to a fresh
`search-service serve` (benchmarks/concurrency.py's server: MiniLM embedder, the benchmark
reranker, `--queries` x `--passages` passages ingested, `candidates` = `--passages`, rerank cache
off so every search reranks). Each response's `timings_ms` gives the server's stages; the client
measures the wall time. Reported, p50 and p95 over the requests:

- the stages: `embed` (query embedding), `search` (FAISS), `db` (collection, filter, chunk rows),
  `rerank` (tokenize + scheduler + forward), the rest of the pipeline, and `total` (pipeline);
- `app`: Flask's time around the pipeline (request hooks, JSON parse and validation, rendering),
  from the server's request-duration metric; `transport`: wall - Flask's time (waitress, the
  socket, the client);
- `forward`: the reranker's forward batches per search (from /metrics, batching on only);
- `overhead`: wall - embed - forward (everything but model time), the issue's goal: <= 10 ms p50.

The `--queries` queries repeat in turn, so with the token cache on (the default) a request's
candidates were mostly tokenized by an earlier one; `--token-cache 0` measures every request cold.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import concurrency  # the server
import rerank as rerank_bench  # the checkpoints and pairs

STAGES = ("embed", "search", "db", "rerank", "other", "total", "app", "transport", "wall")


def histogram_sum(metrics: str, name: str, labels: str = "[^}]*") -> float:
    """The `_sum` of a Prometheus histogram series in a /metrics text (0 when absent)."""
    pattern = rf"^{name}_sum{{{labels}}} (\S+)$"
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def forward_seconds(metrics: str) -> float:
    return histogram_sum(metrics, "rag_rerank_forward_seconds")


def search_seconds(metrics: str) -> float:
    """Flask's time in /v1/search requests so far (request hooks to response, in the app)."""
    labels = 'endpoint="search.search",method="POST"'
    return histogram_sum(metrics, "rag_http_request_duration_seconds", labels)


def main(argv=None) -> int:
    args = parse_args(argv)
    checkpoint = args.checkpoint or str(rerank_bench.make_checkpoint(args.size))
    jobs, _ = rerank_bench.make_pairs(
        checkpoint, args.queries, args.passages, args.passage_tokens, True, args.seed
    )
    documents = [passage for job in jobs for passage in job["passages"]]
    args.clients, args.threads = 1, 4
    rows: dict[str, list[float]] = {stage: [] for stage in STAGES}
    forward = []
    environment = {"RAG_BATCHING": args.batching}
    if args.token_cache is not None:
        environment["RAG_RERANK_TOKEN_CACHE"] = str(args.token_cache)
    with concurrency.Server(args, checkpoint, environment, documents) as server:
        session = requests.Session()
        url = f"{server.base}/v1/search"
        body = lambda i: {
            "collection": "bench",
            "query": jobs[i % len(jobs)]["query"],
            "top_k": 5,
            "rerank": not args.no_rerank,
        }
        for i in range(args.warmup):
            session.post(url, json=body(i), timeout=600).raise_for_status()
        for i in range(args.requests):
            metrics = server.metrics()
            before, app_before = forward_seconds(metrics), search_seconds(metrics)
            started = time.perf_counter()
            response = session.post(url, json=body(i), timeout=600)
            wall = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            timings = response.json()["timings_ms"]
            metrics = server.metrics()
            app = (search_seconds(metrics) - app_before) * 1000
            if args.batching == "on" and not args.no_rerank:
                forward.append((forward_seconds(metrics) - before) * 1000)
            known = sum(timings.get(stage, 0.0) for stage in ("embed", "search", "db", "rerank"))
            values = {
                **timings,
                "other": timings["total"] - known,
                "app": app - timings["total"],
                "transport": wall - app,
            }
            values["wall"] = wall
            for stage in STAGES:
                rows[stage].append(values.get(stage, 0.0))
    model = [
        embed + forward_ms
        for embed, forward_ms in zip(rows["embed"], forward or [0.0] * len(rows["embed"]))
    ]
    rows["forward"] = forward
    rows["overhead"] = [wall - m for wall, m in zip(rows["wall"], model, strict=True)]
    print(f"checkpoint: {rerank_bench.describe_checkpoint(args, checkpoint)}, {args.device}")
    print(
        f"{args.requests} sequential /v1/search, {len(documents)} chunks, candidates "
        f"{args.passages}, rerank {'off' if args.no_rerank else 'on'}, batching {args.batching}, "
        f"token cache {'default' if args.token_cache is None else args.token_cache}"
    )
    print(f"machine: {rerank_bench.machine()}")
    print("| ms | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for q in (50, 95):
        cells = [
            f"{rerank_bench.percentile(values, q):.1f}" if values else "-"
            for values in rows.values()
        ]
        print(f"| p{q} | " + " | ".join(cells) + " |")
    if not forward and not args.no_rerank:
        print("(forward and overhead need batching on: without it, overhead counts the rerank too)")
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    concurrency.add_server_arguments(parser)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--queries", type=int, default=40, help="queries (x passages = chunks)")
    parser.add_argument("--passages", type=int, default=50, help="passages per query = candidates")
    parser.add_argument("--passage-tokens", type=int, default=128, help="lengths: 16..2x this")
    parser.add_argument("--batching", choices=("on", "off"), default="on")
    parser.add_argument("--no-rerank", action="store_true", help="dense search only")
    parser.add_argument(
        "--token-cache",
        type=int,
        help="RAG_RERANK_TOKEN_CACHE for the server (0: every request tokenizes its candidates; "
        "default: the service's, so candidates seen before, about 4 in 5 requests here, are not)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
