"""After a drain: what each replica answers, against a driver's model and against each other.
Counts rather than raises, so a run reports every lost, returned and divergent answer it saw."""

from __future__ import annotations

import random
from collections import Counter
from urllib.parse import quote

from scripts.driver import WORDS, Driver
from scripts.live import Divergence

MODES = ("sparse", "dense", "hybrid")
TOMBSTONE_PROBES = 20  # deleted or replaced versions searched for per collection and audit


def _search(driver: Driver, replica: int, name: str, query: str, mode: str, top_k: int, ids=None) -> list[dict]:
    body: dict = {"collection": name, "query": query, "top_k": top_k, "mode": mode}
    if ids is not None:
        body["filter"] = {"document_ids": ids}
    response = driver.client.call("POST", "/v1/search", "/v1/search", replica=replica, json=body)
    if response.status_code != 200:
        raise Divergence(f"replica {replica}: search {name!r} answered {response.status_code}: {response.text[:200]}")
    return response.json()["results"]


def _tombstones_in(driver: Driver, hits: list[dict]) -> int:
    return sum(1 for hit in hits for word in hit["text"].split() if word.strip('.,"{}:') in driver.model.tombstones)


def audit(driver: Driver, replicas: list[int]) -> Counter:
    """Every document the model holds (acknowledged uploads, not deleted or replaced since), on
    every replica: listed, fetched with its latest text, found first by its unique token (else
    `lost`). Every document deleted since, and a sample of deleted or replaced versions: not
    listed, not fetched, never in a search's results (else `returned`)."""
    counts: Counter = Counter()
    for name in driver.model.collections:
        base = f"/v1/collections/{quote(name, safe='')}"
        present = driver.model.present(name)
        owned = [(token, owner.split("/", 1)[1]) for token, owner in driver.model.tombstones.items()
                 if owner.split("/", 1)[0] == name]
        deleted_ids = {doc_id for _, doc_id in owned} - set(present)
        probes = driver.rng.sample(owned, min(len(owned), TOMBSTONE_PROBES))
        for replica in replicas:
            listed = driver.client.call("GET", "/v1/collections/{name}/documents", base + "/documents?limit=500",
                                        replica=replica).json()
            ids = {d["document_id"] for d in listed["documents"]}
            lost = set(present) - ids
            for doc_id, version in present.items():
                if doc_id in lost:
                    continue
                fetched = driver.client.call("GET", "/v1/collections/{name}/documents/{id}",
                                             driver._doc_path(name, doc_id), replica=replica)
                try:
                    if fetched.status_code != 200:
                        raise Divergence(f"fetch answered {fetched.status_code}")
                    driver._check_text(name, doc_id, fetched.json(), version)
                    hits = _search(driver, replica, name, version.token, "sparse", 3)
                    if not hits or hits[0]["document_id"] != doc_id:
                        raise Divergence(f"its token finds {[h['document_id'] for h in hits]}")
                except Divergence as exc:
                    lost.add(doc_id)
                    driver.audit_notes.append(f"replica {replica}: {name}/{doc_id} lost: {exc}")
            counts["lost"] += len(lost)
            counts["documents_audited"] += len(present)
            returned = ids - set(present)
            for doc_id in deleted_ids - returned:
                if driver.client.call("GET", "/v1/collections/{name}/documents/{id}", driver._doc_path(name, doc_id),
                                      replica=replica).status_code != 404:
                    returned.add(doc_id)
            hits = _search(driver, replica, name, " ".join(driver.rng.sample(WORDS, 4)), "dense", 50)
            found = _tombstones_in(driver, hits)
            for token, _doc_id in probes:
                found += _tombstones_in(driver, _search(driver, replica, name, token, "sparse", 5))
            counts["deleted_probes"] += len(deleted_ids) + len(probes) + 1
            counts["returned"] += len(returned) + found
            if returned or found:
                driver.audit_notes.append(f"replica {replica}: {name}: deleted {sorted(returned)} returned, "
                                          f"{found} deleted or replaced versions in search results")
    return counts


def compare_replicas(driver: Driver, replicas: list[int], rng: random.Random, queries: int = 3) -> Counter:
    """The same queries, every mode, on every replica: the same chunks in the same order with
    the same scores (to 1e-5)."""
    counts: Counter = Counter()
    for name in driver.model.collections:
        tokens = [v.token for v in driver.model.present(name).values()]
        asked = [" ".join(rng.sample(WORDS, 3)) for _ in range(queries)] + rng.sample(tokens, min(1, len(tokens)))
        for query in asked:
            for mode in MODES:
                answers = [[(h["chunk_id"], h["document_id"], round(h["score"], 5))
                            for h in _search(driver, r, name, query, mode, 10)] for r in replicas]
                counts["queries_compared"] += 1
                if any(answer != answers[0] for answer in answers[1:]):
                    counts["divergent"] += 1
                    driver.audit_notes.append(f"{name}: {mode} {query!r} differs between replicas: {answers}")
    return counts
