"""API keys and isolation: every endpoint x role x own / other / missing collection, SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ingestion.pipeline import SourceDocument
from search_service.auth import POLICIES
from search_service.store import keys as key_store

ROLES = ("read", "write", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
FAKE_JOB = "00000000-0000-4000-8000-000000000000"

# (endpoint, method, path, JSON body, role needed, how the collection is named: "url", "json" or None)
ENDPOINTS = [
    ("collections.index", "GET", "/v1/collections", None, "read", None),
    ("collections.create", "POST", "/v1/collections", lambda c: {"name": c}, "write", "json"),
    ("collections.show", "GET", "/v1/collections/{c}", None, "read", "url"),
    ("collections.documents", "GET", "/v1/collections/{c}/documents", None, "read", "url"),
    ("collections.document", "GET", "/v1/collections/{c}/documents/d1", None, "read", "url"),
    ("collections.jobs", "GET", "/v1/collections/{c}/jobs", None, "read", "url"),
    ("collections.upload", "POST", "/v1/collections/{c}/documents",
     lambda c: {"documents": [{"id": "new", "text": "Hello there."}]}, "write", "url"),
    ("collections.delete_document", "DELETE", "/v1/collections/{c}/documents/d1", None, "write", "url"),
    ("collections.delete_document_query", "DELETE", "/v1/collections/{c}/documents?id=d1", None, "write", "url"),
    ("collections.delete_collection", "DELETE", "/v1/collections/{c}", None, "admin", "url"),
    ("jobs.show", "GET", "/v1/jobs/{job}", None, "read", "job"),
    ("search.search", "POST", "/v1/search", lambda c: {"collection": c, "query": "pandas"}, "read", "json"),
    ("search.rerank", "POST", "/v1/rerank", lambda c: {"query": "q", "documents": ["a", "b"]}, "read", None),
    ("search.rerankers", "GET", "/v1/rerankers", None, "read", None),
    ("compat.rerank_v2", "POST", "/v2/rerank",
     lambda c: {"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"]}, "read", None),
    ("compat.rerank_any", "POST", "/rerank", lambda c: {"query": "q", "texts": ["a", "b"]}, "read", None),
    ("embeddings.embeddings", "POST", "/v1/embeddings", lambda c: {"input": "hello"}, "read", None),
    ("embeddings.models", "GET", "/v1/models", None, "read", None),
    ("observability.metrics", "GET", "/metrics", None, "admin", None),
]
OPEN = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json"), ("GET", "/docs")]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stack(request, tmp_path_factory, minilm_path, minilm_embedder, tiny_reranker):
    from search_service.app import create_app
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate
    from tests.conftest import _postgres_database

    data = tmp_path_factory.mktemp("auth")
    urls = iter([f"sqlite:///{data / 'rag.db'}"]) if request.param == "sqlite" else _postgres_database()
    url = next(urls)
    migrate(url)
    settings = Settings(data_dir=data, database_url=url, embedder_model=minilm_path, reranker_model="tiny",
                        device="cpu", auth="on")
    services = build_services(settings, embedder=minilm_embedder, rerankers=RerankerSet({"tiny": tiny_reranker}, "tiny"))
    app = create_app(services=services)
    app.config["TESTING"] = True
    keys = {}
    with services.database.session() as session:
        for role in ROLES:
            keys[role] = key_store.create_key(session, name=f"alpha-{role}", role=role, collections="alpha")[1]
        keys["root"] = key_store.create_key(session, name="root", role="admin", collections="*")[1]
    state = {"app": app, "services": services, "keys": keys, "jobs": {}}
    yield state
    services.close()
    next(urls, None)


def _ensure(stack, name: str) -> None:
    """Collection `name` with document d1 and one job (recreated after a test deleted them)."""
    services, client = stack["services"], stack["app"].test_client()
    root = {"Authorization": f"Bearer {stack['keys']['root']}"}
    if client.get(f"/v1/collections/{name}", headers=root).status_code == 404:
        services.ingestion.ingest(name, [SourceDocument(external_id="d1", data=b"Pandas eat bamboo.", filename="d1.txt")])
        stack["jobs"].pop(name, None)
    if client.get(f"/v1/collections/{name}/documents/d1", headers=root).status_code == 404:
        services.ingestion.ingest(name, [SourceDocument(external_id="d1", data=b"Pandas eat bamboo.", filename="d1.txt")])
    if name not in stack["jobs"]:
        response = client.post(f"/v1/collections/{name}/documents", headers=root,
                               json={"documents": [{"id": "queued", "text": "Queued text."}]})
        stack["jobs"][name] = response.get_json()["job_id"]


@pytest.fixture
def client(stack):
    for name in ("alpha", "beta"):
        _ensure(stack, name)
    return stack["app"].test_client()


def call(stack, client, endpoint, target: str, key: str | None):
    _, method, path, body, _, _ = endpoint
    job = stack["jobs"].get(target, FAKE_JOB)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.open(path.format(c=target, job=job), method=method, headers=headers,
                       json=body(target) if body else None)


def not_found_body(endpoint, target: str, stack) -> dict:
    if endpoint[5] == "job":
        job = stack["jobs"].get(target, FAKE_JOB)
        return {"error": {"code": "job_not_found", "message": f"job {job!r} does not exist"}}
    return {"error": {"code": "collection_not_found", "message": f"collection {target!r} does not exist"}}


def test_every_endpoint_has_a_policy(stack):
    endpoints = {rule.endpoint for rule in stack["app"].url_map.iter_rules()}
    assert endpoints <= set(POLICIES), endpoints - set(POLICIES)
    assert {e[0] for e in ENDPOINTS} | {"health.healthz", "health.readyz", "docs.openapi", "docs.docs"} >= {
        e for e in endpoints if POLICIES[e].role is not None or e.startswith(("health", "docs"))
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("target", ["alpha", "beta"], ids=["own", "other"])
def test_matrix(stack, client, endpoint, role, target):
    response = call(stack, client, endpoint, target, stack["keys"][role])
    scope, needed = endpoint[5], endpoint[4]
    body = response.get_json(silent=True)
    if scope is not None and target != "alpha":
        # Another team's collection looks exactly like one that does not exist, whatever the role.
        assert response.status_code == 404, body
        assert body == not_found_body(endpoint, target, stack)
    elif RANK[role] < RANK[needed] or POLICIES[endpoint[0]].unscoped:  # /metrics: '*' keys only
        assert response.status_code == 403, body
        assert body["error"]["code"] == "forbidden"
    else:
        assert response.status_code not in (401, 403), body
        assert response.status_code < 500, body
        if response.status_code == 404:  # a deleted document, say, but never the collection itself
            assert body["error"]["code"] not in ("collection_not_found", "job_not_found"), body


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
@pytest.mark.parametrize("key", ["none", "garbage", "wrong-secret", "revoked"])
def test_without_a_valid_key_401(stack, client, endpoint, key):
    presented = {
        "none": None,
        "garbage": "not-a-key",
        "wrong-secret": stack["keys"]["admin"][:-4] + "AAAA",
        "revoked": _revoked_key(stack),
    }[key]
    response = call(stack, client, endpoint, "alpha", presented)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _revoked_key(stack) -> str:
    if "revoked" not in stack["keys"]:
        with stack["services"].database.session() as session:
            row, key = key_store.create_key(session, name="old", role="admin", collections="*")
            key_store.revoke_key(session, row.prefix)
        stack["keys"]["revoked"] = key
    return stack["keys"]["revoked"]


@pytest.mark.parametrize("method,path", OPEN)
def test_open_endpoints_need_no_key(client, method, path):
    assert client.open(path, method=method).status_code == 200


def test_other_collection_is_indistinguishable_from_a_missing_one(stack, client):
    headers = {"Authorization": f"Bearer {stack['keys']['admin']}"}
    other = client.get("/v1/collections/beta", headers=headers)
    root = {"Authorization": f"Bearer {stack['keys']['root']}"}
    missing = client.get("/v1/collections/beta-missing", headers=root)
    assert other.status_code == missing.status_code == 404
    assert other.get_json()["error"]["code"] == missing.get_json()["error"]["code"]
    assert other.get_json()["error"]["message"] == missing.get_json()["error"]["message"].replace("beta-missing", "beta")


def test_lists_hide_other_collections(stack, client):
    names = lambda key: [c["name"] for c in client.get(
        "/v1/collections", headers={"Authorization": f"Bearer {key}"}).get_json()["collections"]]
    assert names(stack["keys"]["read"]) == ["alpha"]
    assert {"alpha", "beta"} <= set(names(stack["keys"]["root"]))


def test_x_api_key_header_works(stack, client):
    response = client.get("/v1/collections/alpha", headers={"X-API-Key": stack["keys"]["read"]})
    assert response.status_code == 200


def test_keys_are_stored_hashed(stack):
    with stack["services"].database.session() as session:
        rows = key_store.list_keys(session)
        for row in rows:
            assert row.key_hash.startswith("sha256$")
            assert all(row.key_hash.split("$")[1] not in key for key in stack["keys"].values())
        # the key's secret never appears in the row
        stored = " ".join(f"{r.prefix} {r.key_hash} {r.name}" for r in rows)
    for key in stack["keys"].values():
        secret = key.split("_", 2)[2]  # rag_<prefix>_<secret>; the urlsafe secret may hold "_" itself
        assert len(secret) >= 40 and secret not in stored


def test_last_used_is_recorded(stack, client):
    client.get("/v1/collections", headers={"Authorization": f"Bearer {stack['keys']['read']}"})
    with stack["services"].database.session() as session:
        row = next(r for r in key_store.list_keys(session) if r.name == "alpha-read")
        assert row.last_used_at is not None
