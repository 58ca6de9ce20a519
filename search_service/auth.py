"""API keys, tenant scope and request checks: one gate, `authorize()`, before every view.

`POLICIES` says, per endpoint, the role it needs, where its collection name is, and which body
types it takes. The gate answers in this fixed order (README, "Order of checks"):

1. 401: no key, or a malformed, unknown or revoked one (open endpoints skip 1, 5 and 6);
2. 413: a body above RAG_MAX_UPLOAD_BYTES;
3. 415: a body type the endpoint does not take (`Policy.body`);
4. 400: a body that does not parse, or breaks the edge checks (`api/body.py`: depth, NUL, lone
   surrogates, NaN/Infinity), and path or query parameters with NUL or lone surrogates;
5. 404: the collection is missing or outside the key's scope (the same answer for both; a job's
   collection is found by looking the job up);
6. 403: the key's role is too low for one of its own collections, or the endpoint needs a key for
   every collection (`Policy.unscoped`, e.g. /metrics) and this one is scoped;
7. then the view: 400 for invalid fields, its own 404/409.
With `RAG_AUTH=off` there is no tenant to decide for: steps 1, 5 and 6 are skipped (a missing
collection is then the view's 404, after its field checks).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from flask import Flask, current_app, g, request

from search_service.api.body import check_params, read_body
from search_service.errors import NotFoundError, ServiceError
from search_service.store import keys as key_store

log = logging.getLogger(__name__)


class UnauthorizedError(ServiceError):
    code = "unauthorized"
    status = 401


class ForbiddenError(ServiceError):
    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class Policy:
    """What an endpoint needs.

    `role`: read, write or admin; None: open, no key needed.
    `collection`: where the collection it touches is named: "url" (the `name` URL segment), "json"
    (the body's `collection`), "create" (the body's `name`), "job" (the collection of the job in
    the URL) or None (no collection).
    `body`: the body types it takes ("json", "multipart"); () ignores any body.
    `creates`: the named collection need not exist yet (no 404 for a missing one).
    `unscoped`: only a key for every collection may call it (403 for a scoped key).
    """

    role: str | None
    collection: str | None = None
    body: tuple[str, ...] = ()
    creates: bool = False
    unscoped: bool = False


JSON = ("json",)
OPEN = Policy(None)
POLICIES: dict[str, Policy] = {
    "health.healthz": OPEN,
    "health.readyz": OPEN,
    "docs.openapi": OPEN,
    "docs.docs": OPEN,
    "playground.index": OPEN,
    "static": OPEN,
    "collections.index": Policy("read"),  # filtered by visible_collections()
    "collections.create": Policy("write", "create", JSON, creates=True),
    "collections.show": Policy("read", "url"),
    "collections.documents": Policy("read", "url"),
    "collections.document": Policy("read", "url"),
    "collections.jobs": Policy("read", "url"),
    "collections.upload": Policy("write", "url", ("json", "multipart"), creates=True),
    "collections.delete_document": Policy("write", "url"),
    "collections.delete_document_query": Policy("write", "url"),
    "collections.delete_collection": Policy("admin", "url"),
    "jobs.show": Policy("read", "job"),
    "search.search": Policy("read", "json", JSON),
    "search.rerank": Policy("read", None, JSON),
    "search.rerankers": Policy("read"),
    "compat.rerank_v2": Policy("read", None, JSON),  # Cohere v2 (api/compat.py)
    "compat.rerank_any": Policy("read", None, JSON),  # TEI's /rerank, or a Cohere body
    "embeddings.embeddings": Policy("read", None, JSON),
    "embeddings.models": Policy("read"),
    "observability.metrics": Policy("admin", unscoped=True),
}
COLLECTION_FIELDS = {"json": "collection", "create": "name"}  # body field per `Policy.collection`
_warned: set[str] = set()


def policy_for(endpoint: str, method: str) -> Policy:
    """The endpoint's policy. One nobody listed is closed to scoped keys (it cannot know where the
    collection is) and takes JSON bodies; the matrix test fails until it gets an entry."""
    policy = POLICIES.get(endpoint)
    if policy is not None:
        return policy
    if endpoint not in _warned:
        _warned.add(endpoint)
        log.warning("endpoint %s has no auth policy: only unscoped keys may call it", endpoint)
    read = method in ("GET", "HEAD")
    return Policy("read" if read else "write", None, () if read else JSON, unscoped=True)


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


def current_principal() -> key_store.Principal | None:
    """The request's key, or None when auth is off (or before the gate ran)."""
    return g.get("principal")


def visible_collections() -> frozenset[str] | None:
    """Names the request may see; None means every collection."""
    principal = current_principal()
    return None if principal is None else principal.collections


def collection_not_found(name: str) -> NotFoundError:
    """Exactly the error `store.collections.get_collection` raises for a missing collection."""
    return NotFoundError(f"collection {name!r} does not exist", code="collection_not_found")


def collection_name(policy: Policy, body) -> str | None:
    """The collection the request names, from the route or the parsed body; None if it names none
    (a malformed body: the view answers 400 without reading any collection)."""
    if policy.collection == "url":
        return (request.view_args or {}).get("name")
    field = COLLECTION_FIELDS.get(policy.collection or "")
    if field is None or not isinstance(body.json, dict):
        return None
    value = body.json.get(field)
    return value if isinstance(value, str) else None


def _authenticate(services) -> key_store.Principal:
    key = presented_key()
    if not key:
        raise UnauthorizedError("an API key is required: send 'Authorization: Bearer rag_...'")
    with services.database.session() as session:
        principal = key_store.verify_key(session, key)
    if principal is None:
        raise UnauthorizedError("the API key is invalid or revoked")
    g.principal = principal
    return principal


def _check_scope(policy: Policy, body, principal, services) -> None:
    """404 for a collection that is missing or outside the key's scope: the same answer."""
    from search_service.store.collections import find_collection
    from search_service.store.jobs import get_job

    sees = principal.sees
    if policy.collection == "job":
        job_id = (request.view_args or {}).get("job_id", "")
        with services.database.session() as session:
            job = get_job(session, job_id)  # a missing job: 404 job_not_found
            name = job.collection.name if job.collection else None
        if name is None or not sees(name):
            raise NotFoundError(f"job {job_id!r} does not exist", code="job_not_found")
        return
    name = collection_name(policy, body)
    if name is None:
        return
    if not sees(name):
        raise collection_not_found(name)
    if not policy.creates:
        with services.database.session() as session:
            if find_collection(session, name) is None:
                raise collection_not_found(name)


def authorize() -> None:
    """The gate: every check before the view, in the documented order (module docstring)."""
    if request.method == "OPTIONS" or request.endpoint is None:
        return  # CORS preflight / automatic OPTIONS; no route (404/405 come from Flask)
    services = current_app.extensions["search_service"]
    policy = policy_for(request.endpoint, request.method)
    if policy.role is None:
        return
    auth = services.settings.auth_enabled
    principal = _authenticate(services) if auth else None  # 401
    body = read_body(policy.body)  # 413, 415, 400
    check_params()  # 400
    if principal is None:
        return  # auth off: no tenant to decide for; a missing collection is the view's 404
    _check_scope(policy, body, principal, services)  # 404
    if policy.unscoped and principal.collections is not None:
        raise ForbiddenError("this endpoint needs a key for every collection ('*'); this key is scoped")
    if not principal.allows_role(policy.role):
        raise ForbiddenError(
            f"this key's role ({principal.role}) cannot do this; it needs {policy.role}"
        )


def init_app(app: Flask) -> None:
    app.before_request(authorize)

    @app.after_request
    def www_authenticate(response):
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="search-service"'
        return response


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def startup_warning(settings) -> str | None:
    """The warning `serve` prints when anyone on the network could use the API without a key."""
    if settings.auth_enabled or is_loopback(settings.host):
        return None
    return (
        f"RAG_AUTH is off and the server listens on {settings.host}: anyone who can reach this "
        "port can read, change and delete every collection. Set RAG_AUTH=on and create keys with "
        "`search-service keys create`, or listen on 127.0.0.1."
    )
