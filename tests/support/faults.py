"""Shared pieces of the fault-injection tests: the scenario, the faults, and the agreement check.

Scenario: a collection holds document `a` (version 1); a queued job uploads `a` (version 2)
and a new document `b`. A fault strikes when the job reaches a phase (`Worker.checkpoint`):
"parsing", "embedding", "storing" (just before the final commit) or "committed" (just after).
Afterwards the database, a FAISS index loaded afresh from the snapshot and the database, and the
API must agree on exactly the documents the job's final state says exist.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from ingestion.pipeline import SourceDocument
from search_service.retrieval.index import IndexManager
from search_service.store import collections as store
from search_service.store.jobs import create_job, get_job
from search_service.store.models import Chunk, Document

PHASES = ("parsing", "embedding", "storing", "committed")
BEFORE_COMMIT = PHASES[:3]
A1 = "Glaciers in the Alps retreat every summer. Meltwater feeds the rivers of the valleys below."
A2 = "Glaciers in the Andes shrink faster each decade. Scientists measure the ice with radar."
A3 = "Glaciers in Iceland calve into lagoons. Tourists watch the icebergs drift out to sea."
B = "Honey bees dance to tell their sisters where the flowers are. The hive keeps a steady heat."


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seed_and_queue(services, collection: str) -> str:
    """`a` v1 indexed in `collection`; returns the id of the queued job uploading a v2 and b."""
    services.ingestion.ingest(collection, [SourceDocument(external_id="a", text=A1)])
    payload = json.dumps([{"id": "a", "text": A2}, {"id": "b", "text": B}]).encode()
    with services.database.session() as session:
        target = store.get_collection(session, collection)
        return create_job(session, target, kind="documents", payload=payload, request_id=f"req-{collection}").id


def job_state(services, job_id: str) -> dict:
    with services.database.session() as session:
        job = get_job(session, job_id)
        return {"status": job.status, "error_code": job.error_code, "error": job.error,
                "attempts": job.attempts, "documents": (job.result or {}).get("report")}


def assert_agreement(services, client, collection: str, expected: dict[str, str] | None) -> None:
    """The collection holds exactly `expected` ({id: text}), or is gone (None), everywhere."""
    listing = client.get(f"/v1/collections/{collection}/documents")
    if expected is None:
        assert listing.status_code == 404
        with services.database.session() as session:
            assert store.find_collection(session, collection) is None
        return
    assert listing.status_code == 200, listing.get_json()
    assert sorted(d["document_id"] for d in listing.get_json()["documents"]) == sorted(expected)
    fresh = IndexManager(services.settings.index_dir)  # snapshot on disk + catch-up, no cache
    with services.database.session() as session:
        target = store.get_collection(session, collection)
        rows = session.execute(select(Document.external_id, Document.content_hash)
                               .where(Document.collection_id == target.id)).all()
        assert dict(rows) == {doc_id: digest(text) for doc_id, text in expected.items()}
        chunk_ids = set(session.scalars(select(Chunk.id).where(Chunk.collection_id == target.id)))
        assert chunk_ids, "every stored document has chunks"
        assert set(fresh.get(session, target).ids().tolist()) == chunk_ids
        assert set(services.indexes.get(session, target).ids().tolist()) == chunk_ids
    for doc_id, text in expected.items():
        hits = client.post("/v1/search", json={"collection": collection, "query": text, "top_k": 1,
                                                "rerank": False}).get_json()
        assert hits["results"][0]["document_id"] == doc_id, hits
