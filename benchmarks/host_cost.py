#!/usr/bin/env python
"""The host side of reranking: the CPU time, under the GIL, that a GPU does not take over.

    .venv/bin/python benchmarks/host_cost.py
    .venv/bin/python benchmarks/host_cost.py --requests 20 --launches 10     # a smoke run

On a GPU the model's arithmetic runs on the device, and what limits a server under load is the
host work around it, all of it Python holding the GIL. Measured with the model's arithmetic made
negligible, one thread, after one untimed round:

- `request`: one `/v1/rerank` of `--passages` mixed-length passages through the Flask app
  (JSON, validation, tokenizing or token-cache lookup, pair building, collation, scores, the
  response), the reranker's forward replaced by one returning zeros, `RAG_BATCHING=off`, with the
  token cache on (the `--queries` queries come back in turn, as a search's candidates do) and off
  (every passage tokenized); the peer
  row is sentence-transformers `CrossEncoder.predict` on the same pairs with its forward replaced
  the same way (tokenizing and collation; no HTTP layer);
- `launch`: one padded forward of an XLM-R model with bge-reranker-v2-m3's layout (`--layers`
  layers) at width 16 on 8 x 16 tokens: the Python and dispatch cost of launching a batch, which
  the batch worker pays per batch whatever the batch's size.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import rerank as rerank_bench  # checkpoints, pairs, machine()


def timed(function, count: int) -> list[float]:
    function()  # untimed
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def request_cost(args, checkpoint: str, jobs: list[dict], token_cache: bool) -> list[float]:
    import torch

    from search_service.app import create_app
    from search_service.settings import Settings

    folder = tempfile.mkdtemp(prefix="rag-host-cost-")
    environment = {
        "RAG_DATA_DIR": folder,
        "RAG_RERANKER_MODEL": checkpoint,
        "RAG_EMBEDDER_MODEL": args.embedder,
        "RAG_DEVICE": "cpu",
        "RAG_AUTH": "off",
        "RAG_BATCHING": "off",
        "RAG_RERANK_CACHE_SIZE": "0",
        **({} if token_cache else {"RAG_RERANK_TOKEN_CACHE": "0"}),
    }
    command = [sys.executable, "-m", "search_service", "migrate"]
    subprocess.run(command, env={**os.environ, **environment}, check=True, capture_output=True)
    app = create_app(Settings.from_env(environment))
    reranker = next(iter(app.extensions["search_service"].rerankers.rerankers.values()))
    reranker.packed = False  # the padded path, as on a GPU
    reranker.forward = lambda batch: torch.zeros(batch["input_ids"].shape[0])
    client = app.test_client()
    bodies = itertools.cycle({"query": job["query"], "documents": job["passages"]} for job in jobs)

    def one() -> None:
        assert client.post("/v1/rerank", json=next(bodies)).status_code == 200

    return timed(one, args.requests)


def peer_cost(args, checkpoint: str, jobs: list[dict]) -> list[float]:
    import torch
    from sentence_transformers import CrossEncoder
    from transformers.modeling_outputs import SequenceClassifierOutput

    model = CrossEncoder(checkpoint, device="cpu", max_length=512)
    model.model.forward = lambda input_ids=None, **_: SequenceClassifierOutput(
        logits=torch.zeros(input_ids.shape[0], 1)
    )
    turn = itertools.cycle(jobs)

    def one() -> None:
        job = next(turn)
        model.predict([(job["query"], passage) for passage in job["passages"]], batch_size=32)

    return timed(one, args.requests)


def launch_cost(args) -> list[float]:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    config = XLMRobertaConfig(
        vocab_size=1000,
        hidden_size=16,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        intermediate_size=32,
        num_labels=1,
        max_position_embeddings=514,
        pad_token_id=1,
        attn_implementation="sdpa",
    )
    model = XLMRobertaForSequenceClassification(config).eval()
    ids = torch.randint(3, 1000, (8, 16))
    mask = torch.ones_like(ids)

    def one() -> None:
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)

    return timed(one, args.launches)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--launches", type=int, default=100)
    parser.add_argument("--layers", type=int, default=24, help="bge-reranker-v2-m3 has 24")
    parser.add_argument("--passages", type=int, default=50)
    parser.add_argument("--passage-tokens", type=int, default=128, help="lengths 16..2x this")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--embedder", default=None, help="default: concurrency.py's")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import concurrency  # the embedder fallback

    args.embedder = args.embedder or concurrency.default_embedder()
    checkpoint = str(rerank_bench.make_checkpoint("tiny"))  # the real XLM-R tokenizer layout
    jobs, mean_tokens = rerank_bench.make_pairs(
        checkpoint, args.queries, args.passages, args.passage_tokens, True, seed=0
    )
    ours = "search-service `/v1/rerank` (Flask app, no HTTP)"
    rows = [
        ("request", f"{ours}, token cache on", request_cost(args, checkpoint, jobs, True)),
        ("request", f"{ours}, token cache off", request_cost(args, checkpoint, jobs, False)),
        (
            "request",
            "sentence-transformers `CrossEncoder.predict`",
            peer_cost(args, checkpoint, jobs),
        ),
        ("launch", f"one forward, {args.layers}-layer XLM-R layout, width 16", launch_cost(args)),
    ]
    print(f"machine: {rerank_bench.machine()}, 1 torch thread")
    print(
        f"requests: {args.passages} passages, mean {mean_tokens:.0f} tokens/pair, {args.queries} queries in turn"
    )
    print("| what | engine | calls | p50 ms | mean ms |")
    print("|---|---|---|---|---|")
    for what, engine, samples in rows:
        print(
            f"| {what} | {engine} | {len(samples)} | {statistics.median(samples) * 1000:.2f} "
            f"| {statistics.fmean(samples) * 1000:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
