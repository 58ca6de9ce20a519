"""FAISS index types on synthetic vectors: build time, memory, query latency, recall@50.

    python benchmarks/index.py [--sizes 100000,300000] [--dim 1024] [--queries 100] [--kinds flat,ivf,hnsw]

Vectors are random unit vectors with a little cluster structure (so IVF has something to
partition); recall@50 is measured against exact (Flat) search on the same queries. The service
uses Flat up to RAG_INDEX_FLAT_MAX vectors and HNSW above; IVF is measured for comparison.
"""

from __future__ import annotations

import argparse
import math
import time

import faiss
import numpy as np


def synthetic(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(16, count // 1000), dim)).astype(np.float32)
    vectors = centers[rng.integers(0, len(centers), count)] + 0.5 * rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build(kind: str, vectors: np.ndarray) -> faiss.Index:
    count, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    elif kind == "ivf":
        lists = max(1, min(int(4 * math.sqrt(count)), count // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(1).choice(count, min(count, lists * 39), replace=False)]
        index.train(sample)
        index.nprobe = max(8, lists // 16)
    else:
        raise ValueError(kind)
    index.add(vectors)
    if kind == "hnsw":
        index.hnsw.efSearch = 128
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--kinds", default="flat,ivf,hnsw")
    args = parser.parse_args()
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, dim {args.dim}")
    print("| vectors | index | build s | memory MB | p50 ms/query | p95 ms/query | recall@50 |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for size in (int(s) for s in args.sizes.split(",")):
        vectors = synthetic(size, args.dim)
        queries = synthetic(args.queries, args.dim, seed=99)
        truth = None
        for kind in args.kinds.split(","):
            started = time.perf_counter()
            index = build(kind, vectors)
            build_s = time.perf_counter() - started
            memory_mb = faiss.serialize_index(index).nbytes / 2**20
            latencies, found = [], []
            for query in queries:
                began = time.perf_counter()
                _, ids = index.search(query.reshape(1, -1), 50)
                latencies.append((time.perf_counter() - began) * 1000)
                found.append(ids[0])
            found = np.array(found)
            if kind == "flat" or truth is None:
                truth = found if kind == "flat" else build("flat", vectors).search(queries, 50)[1]
            recall = np.mean([len(set(f) & set(t)) / 50 for f, t in zip(found, truth)])
            p50, p95 = np.percentile(latencies, [50, 95])
            print(f"| {size:,} | {kind} | {build_s:.1f} | {memory_mb:.0f} | {p50:.2f} | {p95:.2f} | {recall:.3f} |", flush=True)
            del index


if __name__ == "__main__":
    main()
