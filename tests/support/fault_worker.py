"""A real worker process that SIGKILLs itself at chosen job phases (fault-injection tests).

    python -m tests.support.fault_worker parsing embedding storing committed

Settings come from the `RAG_*` environment, as for `search-service worker`. The models load
once; then, for each phase named, a forked child runs an ordinary `Worker` that claims the next
job and kills itself with SIGKILL when that job reaches the phase (`Worker.checkpoint`). The
parent prints one line per child, `<phase> <exit signal>`, and exits 0 when every child died by
SIGKILL at its phase.
"""

from __future__ import annotations

import os
import signal
import sys

from ingestion.worker import Worker
from search_service.services import build_services
from search_service.settings import Settings


def run_child(services, settings: Settings, phase: str) -> None:
    services.database.engine.dispose(close=False)  # the parent's connections stay the parent's

    def kill_at(reached: str, _job_id: str) -> None:
        if reached == phase:
            os.kill(os.getpid(), signal.SIGKILL)

    worker = Worker(services.database, services.ingestion, settings.worker_poll_seconds,
                    lease_seconds=settings.job_lease_seconds, max_attempts=settings.job_max_attempts,
                    checkpoint=kill_at)
    worker.run(max_jobs=1)
    os._exit(3)  # the job ended without reaching the phase


def main(phases: list[str]) -> int:
    settings = Settings.from_env()
    services = build_services(settings)
    services.database.dispose()
    print("worker started", flush=True)
    ok = True
    for phase in phases:
        pid = os.fork()
        if pid == 0:
            try:
                run_child(services, settings, phase)
            finally:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        ok &= killed
        print(phase, os.WTERMSIG(status) if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}",
              flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
