"""Two teams on one running app, for the isolation matrix and the edge-case tests.

`alpha-team` and `beta-team` each hold one indexed document (distinct text and id) and one
queued job; `ghost-team` does not exist. Keys: every role scoped to alpha ("own"), to ghost
("missing") and to every collection ("all"), plus a revoked one. `restore()` puts the world back
after a request that changed it (a delete, a create, an upload).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ingestion.pipeline import SourceDocument
from search_service.store import collections as store
from search_service.store import keys as key_store
from search_service.store.jobs import create_job
from search_service.store.models import Job

ALPHA, BETA, GHOST = "alpha-team", "beta-team", "ghost-team"
TEXT = {
    ALPHA: "Alpha pandas chew bamboo shoots in the misty hills.",
    BETA: "Zebrafinch ledger entry xq7 holds the confidential merger plan.",
}
DOCUMENT = {ALPHA: "alpha-doc", BETA: "beta-doc-xq7", GHOST: "ghost-doc"}
FAKE_JOB = "00000000-0000-4000-8000-000000000000"
ROLES = ("read", "write", "admin")
SCOPES = {"own": ALPHA, "missing": GHOST, "all": "*"}


@dataclass
class Principal:
    """Who calls: `kind` is none / malformed / revoked (401s) or key; scope None = every collection."""

    label: str
    kind: str
    role: str | None = None
    scope: frozenset[str] | None = None
    headers: dict = field(default_factory=dict)

    def sees(self, name: str) -> bool:
        return self.scope is None or name in self.scope


@dataclass
class World:
    app: object
    services: object
    principals: list[Principal]
    root: dict
    jobs: dict = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.services.database.engine.dialect.name


@contextlib.contextmanager
def running_world(backend: str, tmp, minilm_path, embedder, reranker, **settings):
    from search_service.app import create_app
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate
    from tests.conftest import _postgres_database

    urls = iter([f"sqlite:///{tmp / 'rag.db'}"]) if backend == "sqlite" else _postgres_database()
    url = next(urls)
    try:
        migrate(url)
        config = Settings(data_dir=tmp, database_url=url, embedder_model=minilm_path,
                          reranker_model="tiny", device="cpu", auth="on", **settings)
        services = build_services(config, embedder=embedder,
                                  rerankers=RerankerSet({"tiny": reranker}, "tiny"))
        app = create_app(services=services)
        app.config["TESTING"] = True
        world = World(app, services, _principals(services), {})
        world.root = {"Authorization": f"Bearer {_key(services, 'root', 'admin', '*')}"}
        restore(world)
        try:
            yield world
        finally:
            services.close()
    finally:
        next(urls, None)


def _key(services, name: str, role: str, collections: str) -> str:
    with services.database.session() as session:
        return key_store.create_key(session, name=name, role=role, collections=collections)[1]


def _principals(services) -> list[Principal]:
    with services.database.session() as session:
        row, revoked = key_store.create_key(session, name="old", role="admin", collections="*")
        key_store.revoke_key(session, row.prefix)
    people = [
        Principal("no-key", "none"),
        Principal("malformed", "malformed", headers={"Authorization": "Bearer rag_not-a-key"}),
        Principal("revoked", "revoked", headers={"Authorization": f"Bearer {revoked}"}),
    ]
    for scope, collections in SCOPES.items():
        for role in ROLES:
            key = _key(services, f"{scope}-{role}", role, collections)
            people.append(Principal(f"{role}@{scope}", "key", role,
                                    None if collections == "*" else frozenset([collections]),
                                    {"Authorization": f"Bearer {key}"}))
    return people


def restore(world: World) -> None:
    """alpha and beta with their document and a queued job; no ghost collection."""
    services = world.services
    with services.database.session() as session:
        ghost = store.find_collection(session, GHOST)
        if ghost is not None:
            store.delete_collection(session, ghost)
    for name in (ALPHA, BETA):
        with services.database.session() as session:
            collection = store.find_collection(session, name)
            present = collection is not None and store.find_document(
                session, collection, DOCUMENT[name]) is not None
        if not present:
            services.ingestion.ingest(name, [SourceDocument(
                external_id=DOCUMENT[name], data=TEXT[name].encode(), filename=f"{name}.txt")])
        with services.database.session() as session:
            collection = store.get_collection(session, name)
            job = session.get(Job, world.jobs[name]) if name in world.jobs else None
            if job is None or job.collection_id != collection.id:
                world.jobs[name] = create_job(session, collection, kind="documents", payload=b"[]").id
