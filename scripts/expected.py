"""What must exist: the plain Python model the soak and the state machine check a deployment against."""

from __future__ import annotations

from dataclasses import dataclass, field

FINAL = {"indexed", "failed", "cancelled", "indexed_with_errors"}
ACTIVE = {"pending", "parsing", "embedding"}


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
