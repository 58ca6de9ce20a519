"""A real waitress server and a real ingestion worker, in threads of the test process.

Same server loop and shutdown as `search_service.server.serve` (which installs signal handlers,
so it only runs in a main thread); the models come from the session fixtures, so nothing loads
twice.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


@contextmanager
def live_server(app, *, threads: int = 4):
    """Serve `app` on a free loopback port; yields the base URL."""
    import waitress

    from search_service.server import close_server

    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads, ident="search-service-test")
    stopping = threading.Event()

    def loop():
        while not stopping.is_set():
            server.asyncore.loop(timeout=0.1, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1)

    thread = threading.Thread(target=loop, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stopping.set()
        thread.join(timeout=10)
        close_server(server, timeout=5)


@contextmanager
def live_worker(services, *, poll_seconds: float = 0.1):
    """`search-service worker` in a thread, on the app's services."""
    from ingestion.worker import Worker

    worker = Worker(services.database, services.ingestion, poll_seconds)
    thread = threading.Thread(target=worker.run, name="live-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stopping.set()
        thread.join(timeout=60)
