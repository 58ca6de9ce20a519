"""A real HTTP server (werkzeug, in a thread) standing in for an engine that cannot run here.

`replay_server(handler)` serves `handler(path, body) -> (status, json_body)` on a free loopback
port and records every request it got (`server.requests`). `recorded(exchanges)` is a handler that
answers each recorded request with its recorded response after checking the request body holds
the recorded fields (a 400 naming the difference otherwise, so the test fails on it).
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from types import SimpleNamespace

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@contextmanager
def replay_server(handler):
    requests: list[tuple[str, object]] = []

    @Request.application
    def app(request: Request) -> Response:
        body = request.get_json(silent=True)
        requests.append((request.path, body))
        status, answer = handler(request.path, body)
        return Response(json.dumps(answer), status=status, mimetype="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="replay-server", daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", requests=requests)
    finally:
        server.shutdown()
        thread.join(timeout=10)


def recorded(exchanges: list[dict]):
    """Answer a request to a recorded path with that exchange's response (first match)."""

    def handler(path, body):
        differ = None
        for exchange in exchanges:
            if exchange["path"] != path:
                continue
            sent = body if isinstance(body, dict) else {}
            differ = {key: (value, sent.get(key)) for key, value in exchange["request"].items()
                      if sent.get(key) != value}
            if not differ:
                return exchange.get("status", 200), exchange["response"]
        if differ is not None:
            return 400, {"error": f"the request differs from every recording of {path}: {differ}"}
        return 404, {"error": f"no recorded exchange for {path}"}

    return handler
