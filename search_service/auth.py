"""API-key authentication and per-collection authorization, enforced in one `before_request` hook.

`POLICIES` says, per endpoint, the role it needs and where its collection name is. The hook:
1. open endpoints (health, docs) pass;
2. no key, or an unknown / revoked / malformed one -> 401;
3. a collection the key does not cover -> the very 404 a missing collection gets (no existence
   leak; lists hide it too, through `visible_collections()`);
4. a role below the endpoint's -> 403 (only reached for the key's own collections).
With `RAG_AUTH=off` every request passes as an anonymous admin of every collection.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from flask import Flask, current_app, g, request

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
    """What an endpoint needs: a role, and where to find the collection it touches (if any).

    `collection`: "url" (the `name` URL segment), "json" (the body's `collection`), "create" (the
    body's `name`, for POST /v1/collections), "job" (the collection of the job in the URL) or None.
    """

    role: str | None  # None: open, no key needed
    collection: str | None = None


OPEN = Policy(None)
POLICIES: dict[str, Policy] = {
    "health.healthz": OPEN,
    "health.readyz": OPEN,
    "docs.openapi": OPEN,
    "docs.docs": OPEN,
    "playground.index": OPEN,
    "static": OPEN,
    "collections.index": Policy("read"),  # filtered by visible_collections()
    "collections.create": Policy("write", "create"),
    "collections.show": Policy("read", "url"),
    "collections.documents": Policy("read", "url"),
    "collections.document": Policy("read", "url"),
    "collections.jobs": Policy("read", "url"),
    "collections.upload": Policy("write", "url"),
    "collections.delete_document": Policy("write", "url"),
    "collections.delete_collection": Policy("admin", "url"),
    "jobs.show": Policy("read", "job"),
    "search.search": Policy("read", "json"),
    "search.rerank": Policy("read"),
    "search.rerankers": Policy("read"),
    "embeddings.embeddings": Policy("read"),
    "embeddings.models": Policy("read"),
    "observability.metrics": Policy("admin"),
}
_warned: set[str] = set()


def policy_for(endpoint: str) -> Policy:
    """The endpoint's policy; an endpoint nobody listed gets a conservative default."""
    policy = POLICIES.get(endpoint)
    if policy is not None:
        return policy
    if endpoint not in _warned:
        _warned.add(endpoint)
        log.warning("endpoint %s has no auth policy; using the default (read/write by method)", endpoint)
    role = "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"
    source = "url" if "name" in (request.view_args or {}) else "json"
    return Policy(role, source)


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


def current_principal() -> key_store.Principal | None:
    """The request's key, or None when auth is off (or before the hook ran)."""
    return g.get("principal")


def visible_collections() -> frozenset[str] | None:
    """Names the request may see; None means every collection."""
    principal = current_principal()
    return None if principal is None else principal.collections


def collection_not_found(name: str) -> NotFoundError:
    """Exactly the error `store.collections.get_collection` raises for a missing collection."""
    return NotFoundError(f"collection {name!r} does not exist", code="collection_not_found")


def _collection_name(policy: Policy) -> str | None:
    if policy.collection == "url":
        return (request.view_args or {}).get("name")
    if policy.collection in ("json", "create"):
        body = request.get_json(silent=True, cache=True) if request.is_json else None
        field = "collection" if policy.collection == "json" else "name"
        value = body.get(field) if isinstance(body, dict) else None
        return value if isinstance(value, str) else None  # malformed: the view answers 400
    return None


def _check_job(principal: key_store.Principal, services) -> None:
    from search_service.store.jobs import get_job

    job_id = (request.view_args or {}).get("job_id", "")
    with services.database.session() as session:
        job = get_job(session, job_id)  # a missing job: 404 job_not_found
        # the name is kept on the job, so a deleted collection's jobs (cancelled) stay readable
        name = job.collection_name or (job.collection.name if job.collection else None)
    if name is None or not principal.sees(name):
        raise NotFoundError(f"job {job_id!r} does not exist", code="job_not_found")


def authorize() -> None:
    services = current_app.extensions["search_service"]
    if not services.settings.auth_enabled or request.method == "OPTIONS" or request.endpoint is None:
        return  # auth off; CORS preflight; no route (404/405 come from Flask)
    policy = policy_for(request.endpoint)
    if policy.role is None:
        return
    key = presented_key()
    if not key:
        raise UnauthorizedError("an API key is required: send 'Authorization: Bearer rag_...'")
    with services.database.session() as session:
        principal = key_store.verify_key(session, key)
    if principal is None:
        raise UnauthorizedError("the API key is invalid or revoked")
    g.principal = principal
    if policy.collection == "job":
        _check_job(principal, services)
    else:
        name = _collection_name(policy)
        if name is not None and not principal.sees(name):
            raise collection_not_found(name)
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
