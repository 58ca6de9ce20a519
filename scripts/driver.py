"""Operations against a live deployment, each checked as it answers and applied to the model; the
drain (every job final) and the full check after it."""

from __future__ import annotations

import json
import random
import string
import time
from collections import Counter
from urllib.parse import quote

import requests

from scripts.expected import FINAL, Coll, Doc, JobRecord, Model, Version, job_documents
from scripts.live import Client, Deployment, Divergence, expect

WORDS = ["river", "stone", "lantern", "copper", "meadow", "harbor", "orchard", "signal", "canvas", "ember", "glacier", "violet", "timber", "compass", "falcon", "marble", "quarry", "saddle", "thistle", "beacon", "cobalt", "dune", "fern", "garnet", "hollow", "island", "juniper", "kettle", "ledger", "mosaic", "nectar", "opal", "pepper", "quill", "raven", "sable", "tundra", "umber", "willow"]
# Odd but valid ids: a path, unicode, spaces, a file-like name (issue 15: never sniffed as a PDF).
DOCUMENT_IDS = ("d0", "d1", "d2", "dir/sub/d3.txt", "naïve doc 4", "report.pdf", "page.html", "d7")


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
        self.queued(name, expect(response, 202).json()["job_id"], versions)

    def queued(self, name: str, job_id: str, versions: dict[str, Version]) -> None:
        """The model's side of an accepted upload (also for one whose answer was lost in a crash
        but whose job the server holds)."""
        coll = self.model.collections[name]
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

    def delete_document(self, name: str, doc_id: str) -> requests.Response:
        self.ops["delete_document"] += 1
        response = self.client.call("DELETE", "/v1/collections/{name}/documents/{id}", self._doc_path(name, doc_id))
        self.deleted(name, doc_id, response)
        return response

    def deleted(self, name: str, doc_id: str, response: requests.Response | None) -> None:
        """Apply a delete's answer to the model. None: the answer was lost (the replica died), so
        whether the delete took effect is read back from the server."""
        coll = self.model.collections.get(name)
        doc = coll.docs.get(doc_id) if coll is not None else None
        if doc is None or (doc.settled is None and not doc.pending):
            if response is not None:
                expect(response, 404)
            return
        if doc.pending:  # races with its upload: gone now, but the upload may still land after it
            if response is not None:
                expect(response, 204, 404)
            doc.deleted_after_pending = True
            for job_id in coll.jobs:
                record = self.model.jobs[job_id]
                if doc_id in record.ids and record.status not in FINAL:
                    record.raced.add(doc_id)
            return
        if response is None:
            found = self.client.call("GET", "/v1/collections/{name}/documents/{id}", self._doc_path(name, doc_id))
            if expect(found, 200, 404).status_code == 200:
                return
        else:
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
        was pending, or uploaded again later and stored first (several workers run jobs out of
        order), may instead be reported failed (`document_changed`, issue 15), and then the job
        says `indexed_with_errors` (or `failed` when it held nothing else)."""
        record = self.model.jobs[job_id]
        later = self.model.collections[record.collection].jobs
        superseded = {d for j in later[later.index(job_id) + 1:] for d in self.model.jobs[j].ids}
        reported = job_documents(job.get("result") or {})
        if set(reported) != set(record.ids):
            raise Divergence(f"job {job_id} ({job['status']}: {job.get('error')}) reports documents "
                             f"{sorted(reported)}, the upload held {sorted(record.ids)}")
        failed = {d for d, status in reported.items() if status == "failed"}
        if failed - record.raced - superseded:
            raise Divergence(f"job {job_id} failed {sorted(failed - record.raced - superseded)} ({job['status']}: {job.get('error')})")
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
