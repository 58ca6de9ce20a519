"""Ingestion inside `serve`: worker threads that are restarted when one dies, and a watch that
says (once) when uploads wait with no worker at all.

`WorkerThreads` runs `serve --ingest-workers N`: each thread runs a `Worker`, whose loop already
survives any single job; should a thread die anyway, the supervisor logs it and starts a new
worker in its place. `state()` is what `/readyz` reports. `UnclaimedJobsWatch` runs in every
`serve`: when jobs have waited longer than `RAG_JOB_UNCLAIMED_WARN_S` and no worker has been seen
(no job held under a live lease, none finished lately, no live worker thread here), it logs one
warning, and another only after the queue was served again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from search_service.store.jobs import unclaimed_jobs

log = logging.getLogger(__name__)


class WorkerThreads:
    def __init__(self, make_worker: Callable[[], object], count: int, *, check_every_s: float = 1.0):
        self.make_worker = make_worker
        self.count = count
        self.check_every_s = check_every_s
        self.restarts = 0
        self.stopping = threading.Event()
        self._slots: list[tuple[object, threading.Thread]] = []
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self._slots = [self._launch(index) for index in range(self.count)]
        self._supervisor = threading.Thread(target=self._supervise, name="ingest-supervisor", daemon=True)
        self._supervisor.start()

    def state(self) -> dict:
        with self._lock:
            alive = sum(thread.is_alive() for _, thread in self._slots)
        return {"configured": self.count, "alive": alive, "restarts": self.restarts}

    @property
    def healthy(self) -> bool:
        return self.state()["alive"] == self.count

    def workers(self) -> list:
        with self._lock:
            return [worker for worker, _ in self._slots]

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        with self._lock:
            slots = list(self._slots)
        for worker, _ in slots:
            worker.stopping.set()
        for _, thread in slots:
            thread.join(timeout=timeout)

    def _launch(self, index: int) -> tuple[object, threading.Thread]:
        worker = self.make_worker()

        def run() -> None:
            try:
                worker.run()
            except BaseException:
                log.exception("ingestion worker thread %d died", index)

        thread = threading.Thread(target=run, name=f"ingest-worker-{index}", daemon=True)
        thread.start()
        return worker, thread

    def revive_dead(self) -> int:
        """Start a new worker in place of each thread that died; how many were restarted."""
        revived = 0
        with self._lock:
            for index, (_, thread) in enumerate(self._slots):
                if not thread.is_alive() and not self.stopping.is_set():
                    log.error("ingestion worker thread %d stopped; starting a new one", index)
                    self._slots[index] = self._launch(index)
                    self.restarts += 1
                    revived += 1
        return revived

    def _supervise(self) -> None:
        while not self.stopping.wait(self.check_every_s):
            self.revive_dead()


class UnclaimedJobsWatch:
    def __init__(self, database, warn_after_s: float, threads: WorkerThreads | None = None,
                 *, check_every_s: float | None = None):
        self.database = database
        self.warn_after_s = warn_after_s
        self.threads = threads
        self.check_every_s = check_every_s or min(10.0, max(0.2, warn_after_s / 3))
        self.warned = False
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="unclaimed-jobs-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def check(self) -> bool:
        """Log the warning if it is due; True when uploads wait with no worker seen."""
        with self.database.session() as session:
            waiting, seen = unclaimed_jobs(session, self.warn_after_s)
        if self.threads is not None and self.threads.state()["alive"]:
            seen += 1
        stuck = waiting > 0 and seen == 0
        if stuck and not self.warned:
            log.warning(
                "%d upload job(s) have waited more than %g s and no ingestion worker has been seen; "
                "start `search-service worker` or `serve --ingest-workers 1`", waiting, self.warn_after_s,
            )
        self.warned = stuck or (self.warned and waiting > 0)
        return stuck

    def _watch(self) -> None:
        while not self.stopping.wait(self.check_every_s):
            try:
                self.check()
            except Exception:  # the database may be restarting; check again later
                log.debug("could not check for unclaimed jobs", exc_info=True)
