"""A live deployment for the soak and the state machine: `serve` + `worker` processes, and an HTTP
client that times every call and holds every answer to the one error shape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
    """`search-service serve` and one `search-service worker` on a fresh data directory."""

    def __init__(self, data_dir: Path, database_url: str, embedder: str, *, lease_seconds: float = 2.0, env: dict | None = None):
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
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.base_url = ""
        self.worker_starts = 0
        self.worker_deaths: list[int] = []  # exit codes of workers that died without being killed

    def start(self, timeout: float = 180) -> Deployment:
        subprocess.run([str(BIN), "migrate"], env=self.env, check=True, capture_output=True)
        port = free_port()
        with open(self.data_dir / "serve.log", "a") as log:
            self.server = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--threads", "8"],
                                           env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.base_url = f"http://127.0.0.1:{port}"
        self.start_worker()
        deadline = time.time() + timeout
        while True:
            if self.server.poll() is not None:
                raise RuntimeError("serve exited: " + self.log("serve")[-3000:])
            try:
                if requests.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise RuntimeError("serve not ready: " + self.log("serve")[-3000:])
            time.sleep(0.3)

    def log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_worker(self) -> None:
        with open(self.data_dir / "worker.log", "a") as log:
            self.worker = subprocess.Popen([str(BIN), "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.worker_starts += 1

    def kill_worker(self) -> None:
        """SIGKILL the worker (whatever it is doing) and start a new one."""
        assert self.worker is not None
        if self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()
        self.start_worker()

    def worker_alive(self) -> bool:
        """False (and a replacement started) when the worker exited on its own."""
        if self.worker is not None and self.worker.poll() is not None:
            self.worker_deaths.append(self.worker.returncode)
            self.start_worker()
            return False
        return True

    def stop(self) -> None:
        for process in (self.worker, self.server):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def __enter__(self) -> Self:
        return self.start()

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
