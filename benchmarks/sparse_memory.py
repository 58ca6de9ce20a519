"""Memory of the per-process lexical indexes (they stay in every replica, whatever the vector backend).

    python benchmarks/sparse_memory.py --chunks 20000

- BM25: SciFact abstracts (../shared/data/scifact, about 200 words each) repeated to `--chunks`,
  analyzed as the service does (`retrieval.analyzer`), the cached term lists plus `BM25Scorer`.
- lexical: bge-m3-style weights, `--weights` token ids per chunk drawn Zipf-like from a 250k
  vocabulary (string keys, as JSON stores them), the cached dicts plus `LexicalScorer`.

Prints the RSS growth (/proc/self/statm) and the same scaled to 100k chunks.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_service.retrieval.analyzer import analyze
from search_service.retrieval.sparse import BM25Scorer, LexicalScorer


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def bm25(chunks: int) -> tuple[float, float]:
    texts = [json.loads(line)["text"] for line in (ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl").open()]
    gc.collect()
    before = rss_mb()
    items = {i: analyze(f"{texts[i % len(texts)]} doc{i}") for i in range(chunks)}
    cached = rss_mb()
    scorer = BM25Scorer(np.array(list(items), dtype=np.int64), list(items.values()))
    gc.collect()
    assert scorer is not None
    return cached - before, rss_mb() - cached


def lexical(chunks: int, weights: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    gc.collect()
    before = rss_mb()
    items = {
        i: {str(int(t)): float(w) for t, w in zip(np.minimum(rng.zipf(1.3, weights), 250_000), rng.random(weights))}
        for i in range(chunks)
    }
    cached = rss_mb()
    scorer = LexicalScorer(np.arange(chunks, dtype=np.int64), list(items.values()))
    gc.collect()
    assert scorer is not None
    return cached - before, rss_mb() - cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--weights", type=int, default=150)
    parser.add_argument("--index", choices=["bm25", "lexical"], help="one kind (default: each in its own process)")
    args = parser.parse_args()
    if args.index is None:  # a fresh process each: freed memory would otherwise be reused and hide growth
        for name in ("bm25", "lexical"):
            subprocess.run([sys.executable, __file__, "--chunks", str(args.chunks), "--weights", str(args.weights), "--index", name], check=True)
        return
    cached, index = bm25(args.chunks) if args.index == "bm25" else lexical(args.chunks, args.weights)
    total = cached + index
    print(f"{args.index}: {args.chunks:,} chunks, cached {cached:.0f} MB + index {index:.0f} MB = {total:.0f} MB "
          f"-> {total * 100_000 / args.chunks:,.0f} MB per 100k chunks", flush=True)


if __name__ == "__main__":
    main()
