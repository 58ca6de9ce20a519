"""The production server: waitress with graceful shutdown.

On SIGTERM (or SIGINT) the server stops listening at once (new connections are refused), keeps
serving the requests it already accepted until they are answered, then exits; requests still
running after `RAG_SHUTDOWN_TIMEOUT_SECONDS` are abandoned. Models are loaded before the port
opens (`create_app` runs first), so `/readyz` answers 200 from the first request.
"""

from __future__ import annotations

import logging
import signal
import time

log = logging.getLogger(__name__)


def _busy(server) -> bool:
    """Requests queued, running, or with unsent response bytes."""
    dispatcher = server.task_dispatcher
    if dispatcher.queue or dispatcher.active_count:
        return True
    for channel in list(server._map.values()):
        if channel is server or not hasattr(channel, "requests"):
            continue
        if channel.requests or channel.total_outbufs_len:
            return True
    return False


def serve(app, *, host: str, port: int, threads: int, shutdown_timeout: float, ident: str = "search-service") -> None:
    import waitress

    server = waitress.create_server(app, host=host, port=port, threads=threads, ident=ident)
    state = {"deadline": None}

    def stop(signum, _frame):
        if state["deadline"] is not None:
            return
        # Only note it here: the loop may be inside select() on the listening socket, so the
        # socket is closed between two loop iterations.
        state["deadline"] = time.monotonic() + shutdown_timeout
        state["signal"] = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            server.asyncore.loop(timeout=0.2, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1)
            if state["deadline"] is None:
                continue
            if server.accepting:
                log.info("%s received: no new connections; finishing in-flight requests (up to %.0f s)",
                         state["signal"], shutdown_timeout)
                server.accepting = False
                server.del_channel()  # out of the poll map: the loop stops accepting
                server.socket.close()  # the port closes: new connections are refused
            if not _busy(server):
                break
            if time.monotonic() >= state["deadline"]:
                log.warning("shutdown timeout: abandoning the requests still running")
                break
    finally:
        close_server(server, timeout=1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("server stopped")


def close_server(server, *, timeout: float) -> None:
    """Stop waitress's task threads (pending tasks cancelled) and close every channel."""
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
    for channel in list(server._map.values()):
        try:
            channel.close()
        except OSError:
            pass


def serve_gunicorn(load_app, *, host: str, port: int, threads: int, workers: int, shutdown_timeout: float,
                   boot_timeout: int = 600) -> None:
    """gunicorn (the optional `gunicorn` extra): `workers` processes of `threads` threads (gthread).

    `load_app()` runs in each worker after the fork, so every process loads its own models (torch's
    thread pools are not fork-safe, so nothing is preloaded in the master). The master binds the
    port first; connections wait in the backlog until a worker has loaded. SIGTERM: gunicorn's
    graceful stop, accepted requests finish within `shutdown_timeout`. `boot_timeout` is gunicorn's
    heartbeat timeout; a gthread worker beats while its requests run, so it only bounds model loading
    and a stuck worker.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    class RootHandlersLogger(Logger):
        """gunicorn's own lines go through the root handlers: the app's format (RAG_LOG_FORMAT)
        and stream, instead of gunicorn's bracketed text beside the app's JSON."""

        def setup(self, cfg):
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in list(log.handlers):
                    log.removeHandler(handler)
                log.propagate = True

    class Application(BaseApplication):
        def load_config(self):
            options = {
                "bind": [bind],
                "workers": workers,
                "worker_class": "gthread",
                "threads": threads,
                "graceful_timeout": int(shutdown_timeout),
                "timeout": boot_timeout,
                "proc_name": "search-service",
                "accesslog": None,  # every request is logged by the app (observability.py)
                "errorlog": "-",
                "logger_class": RootHandlersLogger,
                "control_socket_disable": True,  # gunicorn >= 25 would share one socket in $HOME between servers
            }
            for key, value in options.items():
                if key in self.cfg.settings:  # older gunicorn lacks the newer settings
                    self.cfg.set(key, value)

        def load(self):
            return load_app()

    Application().run()
