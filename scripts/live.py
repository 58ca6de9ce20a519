"""A live deployment for the soak, the state machine and the replicas run: `serve` + `worker`
processes, and an HTTP client that times every call and holds every answer to the one error shape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Self

import requests

BIN = Path(sys.executable).parent / "search-service"


class Divergence(AssertionError):
    """The deployment disagrees with the model (or broke a rule every response must follow)."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    """`search-service serve` replicas and `search-service worker`s (one of each by default) on one
    database and data directory. Processes are numbered; `kill_*` SIGKILLs one (what a crash or an
    OOM kill does), `start_*` brings it back (a replica on its old port, as a balancer expects)."""

    def __init__(self, data_dir: Path, database_url: str, embedder: str, *, lease_seconds: float = 2.0,
                 env: dict | None = None, replicas: int = 1, workers: int = 1):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ, "RAG_DATA_DIR": str(self.data_dir), "RAG_DATABASE_URL": database_url,
            "RAG_EMBEDDER_MODEL": embedder, "RAG_RERANKER_MODEL": "none", "RAG_DEVICE": "cpu",
            "RAG_AUTH": "off", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "RAG_WORKER_POLL_SECONDS": "0.05", "RAG_JOB_LEASE_SECONDS": str(lease_seconds),
            "RAG_JOB_MAX_ATTEMPTS": "20", "RAG_EMBED_BATCH_SIZE": "16", "OMP_NUM_THREADS": "1",
            **(env or {}),
        }
        self.servers: list[subprocess.Popen | None] = [None] * replicas
        self.ports = [free_port() for _ in range(replicas)]
        self.base_urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.workers: list[subprocess.Popen | None] = [None] * workers
        self.worker_starts = 0
        self.worker_deaths: list[int] = []  # exit codes of workers that died without being killed
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.base_urls[0]

    @property
    def server(self) -> subprocess.Popen | None:
        return self.servers[0]

    @property
    def worker(self) -> subprocess.Popen | None:
        return self.workers[0]

    def start(self, timeout: float = 180) -> Deployment:
        subprocess.run([str(BIN), "migrate"], env=self.env, check=True, capture_output=True)
        for replica in range(len(self.servers)):
            self.start_server(replica, wait=False)
        for number in range(len(self.workers)):
            self.start_worker(number)
        for replica in range(len(self.servers)):
            self.wait_ready(replica, timeout)
        return self

    @staticmethod
    def _log_name(kind: str, number: int) -> str:
        return kind if number == 0 else f"{kind}-{number}"

    def log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_server(self, replica: int = 0, *, wait: bool = True, timeout: float = 180) -> None:
        with open(self.data_dir / f"{self._log_name('serve', replica)}.log", "a") as log:
            self.servers[replica] = subprocess.Popen(
                [str(BIN), "serve", "--port", str(self.ports[replica]), "--threads", "8"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(replica, timeout)

    def wait_ready(self, replica: int, timeout: float = 180) -> None:
        server, name = self.servers[replica], self._log_name("serve", replica)
        deadline = time.time() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"{name} exited: " + self.log(name)[-3000:])
            try:
                if requests.get(f"{self.base_urls[replica]}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"{name} not ready: " + self.log(name)[-3000:])
            time.sleep(0.3)

    def kill_server(self, replica: int = 0) -> None:
        """SIGKILL a replica; it stays down until `start_server`."""
        self._kill(self.servers[replica])
        self.servers[replica] = None

    def start_worker(self, number: int = 0) -> None:
        with open(self.data_dir / f"{self._log_name('worker', number)}.log", "a") as log:
            self.workers[number] = subprocess.Popen([str(BIN), "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.worker_starts += 1

    def kill_worker(self, number: int = 0, *, restart: bool = True) -> None:
        """SIGKILL a worker (whatever it is doing) and, unless told not to, start a new one."""
        with self._lock:
            self._kill(self.workers[number])
            self.workers[number] = None
            if restart:
                self.start_worker(number)

    @staticmethod
    def _kill(process: subprocess.Popen | None) -> None:
        assert process is not None, "not running"
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()

    def worker_alive(self) -> bool:
        """False (and a replacement started) when a worker exited on its own."""
        with self._lock:
            alive = True
            for number, worker in enumerate(self.workers):
                if worker is not None and worker.poll() is not None:
                    self.worker_deaths.append(worker.returncode)
                    self.start_worker(number)
                    alive = False
            return alive

    def stop(self) -> None:
        for process in (*self.workers, *self.servers):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


class Client:
    """HTTP with per-endpoint latencies; every error must have the one JSON shape."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.server_errors: list[str] = []

    def call(self, method: str, endpoint: str, path: str, **kwargs) -> requests.Response:
        start = time.perf_counter()
        response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        self.latencies[f"{method} {endpoint}"].append(time.perf_counter() - start)
        if response.status_code >= 500:
            self.server_errors.append(f"{method} {path}: {response.status_code} {response.text[:300]}")
            raise Divergence(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                assert isinstance(error["code"], str) and isinstance(error["message"], str)
            except Exception:  # noqa: BLE001
                raise Divergence(f"{method} {path}: error not in the one JSON shape: {response.text[:300]}") from None
        return response


def expect(response: requests.Response, *statuses: int) -> requests.Response:
    if response.status_code not in statuses:
        raise Divergence(f"{response.request.method} {response.request.path_url}: expected "
                         f"{' or '.join(map(str, statuses))}, got {response.status_code} {response.text[:300]}")
    return response
