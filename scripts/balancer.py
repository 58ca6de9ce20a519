"""A client-side balancer over API replicas, as a load balancer in front of them would be: each
call goes to the next replica in rotation; a replica that is killed is taken out of rotation (the
balancer's health check) and put back once it is ready again. A request that was in flight on a
replica when it died, or that reached it before it left the rotation, ends in a connection error:
counted per replica, apart from the answers (and the 5xx among them) each replica gave."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict

import requests

from scripts.live import Client


class Lost(Exception):
    """The replica went away before it answered: the request may or may not have taken effect."""

    def __init__(self, replica: int, method: str, path: str, error: Exception):
        super().__init__(f"replica {replica}: {method} {path}: {type(error).__name__}")
        self.replica, self.method, self.path = replica, method, path


class Rotation:
    """Which replicas take new requests (shared by every client thread)."""

    def __init__(self, replicas: int):
        self._in = set(range(replicas))
        self._lock = threading.Lock()

    def take_out(self, replica: int) -> None:
        with self._lock:
            self._in.discard(replica)

    def put_back(self, replica: int) -> None:
        with self._lock:
            self._in.add(replica)

    def members(self) -> list[int]:
        with self._lock:
            return sorted(self._in)


class Balancer:
    """The `Client` interface (`call`, `latencies`, `server_errors`) over several replicas, one
    `Client` each, round robin over those in rotation. Not shared between threads."""

    def __init__(self, base_urls: list[str], rotation: Rotation, *, start: int = 0, timeout: float = 120):
        self.clients = [Client(url, timeout=timeout) for url in base_urls]
        self.rotation = rotation
        self._turn = itertools.count(start)
        self.connection_errors: Counter = Counter()  # replica -> requests that got no answer
        self.lost: list[str] = []

    def pick(self) -> int:
        members = self.rotation.members()
        if not members:
            raise RuntimeError("no replica in rotation")
        return members[next(self._turn) % len(members)]

    def call(self, method: str, endpoint: str, path: str, *, replica: int | None = None, **kwargs) -> requests.Response:
        replica = self.pick() if replica is None else replica
        try:
            return self.clients[replica].call(method, endpoint, path, **kwargs)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            self.connection_errors[replica] += 1
            self.lost.append(f"replica {replica}: {method} {path}")
            raise Lost(replica, method, path, exc) from exc

    @property
    def latencies(self) -> dict[str, list[float]]:
        merged: dict[str, list[float]] = defaultdict(list)
        for client in self.clients:
            for endpoint, values in client.latencies.items():
                merged[endpoint].extend(values)
        return merged

    @property
    def server_errors(self) -> list[str]:
        return [f"replica {r}: {line}" for r, c in enumerate(self.clients) for line in c.server_errors]

    def answered(self) -> Counter:
        """Replica -> requests it answered (any status)."""
        return Counter({r: sum(len(v) for v in c.latencies.values()) for r, c in enumerate(self.clients)})

    def server_errors_by_replica(self) -> Counter:
        return Counter({r: len(c.server_errors) for r, c in enumerate(self.clients)})
