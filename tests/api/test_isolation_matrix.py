"""The authorization matrix, generated from the app's URL map and `auth.POLICIES`.

Every route and method (HEAD and OPTIONS aside: HEAD runs the GET view, OPTIONS carries no data)
x principal (no key, malformed header, revoked key; read, write and admin keys scoped to the
caller's own collection, to a missing one, or to every collection) x target collection (own,
another team's, missing) x body encoding (JSON, JSON with a charset, text/plain, form, none,
multipart; only "none" for routes that take no body). The expected status comes from the route's
policy and the documented order 401 -> 413 -> 415 -> 400 -> 404 -> 403 -> the view; a new route
is covered without editing this file, and one without a policy fails `test_every_route_has_a_policy`.
No response to a principal that does not see a collection may hold its text, document id, job
id or (unless the request named it) its name. One running app per database backend.
"""

from __future__ import annotations

import io
import json

import pytest

from search_service.auth import COLLECTION_FIELDS, POLICIES
from search_service.store.keys import ROLES
from tests.support.tenants import (
    ALPHA,
    BETA,
    DOCUMENT,
    FAKE_JOB,
    GHOST,
    TEXT,
    restore,
    running_world,
)

ENCODINGS = ("json", "json-charset", "text", "form", "none", "multipart")
BODY_KIND = {"json": "json", "json-charset": "json", "multipart": "multipart"}
# Optional: a fuller body for an endpoint, so an allowed call does real work (it stays generated
# without one: the collection field from the policy is always added).
SAMPLES = {"search.search": {"query": "confidential merger plan bamboo", "rerank": False}}
PATH_VALUES = {"filename": "playground.js"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request, tmp_path_factory, minilm_path, minilm_embedder, tiny_reranker):
    with running_world(request.param, tmp_path_factory.mktemp("matrix"), minilm_path,
                       minilm_embedder, tiny_reranker) as built:
        yield built


def routes(app):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def test_every_route_has_a_policy(world):
    missing = sorted({rule.endpoint for rule, _ in routes(world.app)} - set(POLICIES))
    assert not missing, (
        f"routes without an entry in search_service/auth.py POLICIES: {missing}. Add one: the role "
        "it needs, where its collection is named (url/json/create/job/None) and the body types it "
        "takes; until then scoped keys get 403 and this matrix cannot say what is expected."
    )


def _path(rule, world, target) -> str:
    values = {}
    for arg in rule.arguments:
        values[arg] = {
            "name": target,
            "document_id": DOCUMENT.get(target, "doc"),
            "job_id": world.jobs.get(target, FAKE_JOB),
        }.get(arg) or PATH_VALUES.get(arg, "x")
    return rule.build(values, append_unknown=False)[1]


def _request(encoding: str, payload: dict) -> dict:
    text = json.dumps(payload)
    fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()}
    return {
        "json": {"data": text, "content_type": "application/json"},
        "json-charset": {"data": text, "content_type": "application/json; charset=utf-8"},
        "text": {"data": text, "content_type": "text/plain"},
        "form": {"data": fields, "content_type": "application/x-www-form-urlencoded"},
        "none": {},
        "multipart": {"data": {**fields, "file": (io.BytesIO(b"Multipart upload text."), "up.txt")},
                      "content_type": "multipart/form-data"},
    }[encoding]


def expected(policy, who, target, encoding):
    """The status the documented order gives, or "allowed" (the view decides), or "open"."""
    if policy.role is None:
        return "open"
    if who.kind != "key":
        return 401
    if policy.body and BODY_KIND.get(encoding) not in policy.body:
        return 415
    if target is not None:
        if not who.sees(target):
            return 404
        if target == GHOST and (not policy.creates or policy.collection == "job"):
            return 404
    if policy.unscoped and who.scope is not None:
        return 403
    if ROLES.index(who.role) < ROLES.index(policy.role):
        return 403
    return "allowed"


def not_found(policy, world, target) -> dict:
    if policy.collection == "job":
        job = world.jobs.get(target, FAKE_JOB)
        return {"error": {"code": "job_not_found", "message": f"job {job!r} does not exist"}}
    return {"error": {"code": "collection_not_found", "message": f"collection {target!r} does not exist"}}


def leaks(text: str, who, target, world) -> list[str]:
    found = []
    for name in (ALPHA, BETA):
        if who.kind == "key" and who.sees(name):
            continue
        named = [name, world.jobs[name]] if target != name else []  # a 404 may echo what was asked
        secrets = [TEXT[name], DOCUMENT[name], *named]
        found += [f"{name}: {secret!r}" for secret in secrets if secret in text]
    return found


def judge(response, want, policy, who, target, world) -> list[str]:
    status, body = response.status_code, response.get_json(silent=True)
    problems = [f"leak {leak}" for leak in leaks(response.get_data(as_text=True), who, target, world)]
    if status >= 500:
        problems.append(f"5xx {status}")
    elif want == "open":
        problems += [f"open route answered {status}"] if status == 401 else []
    elif want == "allowed":
        if status in (401, 403, 415):
            problems.append(f"allowed but {status}")
        elif status == 404 and body["error"]["code"] in ("collection_not_found", "job_not_found"):
            problems.append(f"allowed but {body}")
    elif status != want:
        problems.append(f"expected {want}, got {status} {body}")
    elif want == 404 and body != not_found(policy, world, target):
        problems.append(f"404 differs from a missing collection's: {body}")
    elif want in (401, 403, 415):
        code = {401: "unauthorized", 403: "forbidden", 415: "unsupported_media_type"}[want]
        problems += [] if body["error"]["code"] == code else [f"code {body['error']['code']}"]
    return problems


def test_matrix(world):
    client = world.app.test_client()
    failures, cases, statuses = [], 0, {}
    for rule, method in routes(world.app):
        policy = POLICIES.get(rule.endpoint)
        if policy is None:
            continue  # test_every_route_has_a_policy says so
        targets = (ALPHA, BETA, GHOST) if policy.collection else (None,)
        encodings = ENCODINGS if policy.body else ("none",)
        for who in world.principals:
            for target in targets:
                for encoding in encodings:
                    payload = dict(SAMPLES.get(rule.endpoint, {}))
                    field = COLLECTION_FIELDS.get(policy.collection or "")
                    if field:
                        payload[field] = target
                    path = _path(rule, world, target)
                    response = client.open(path, method=method, headers=who.headers,
                                           **_request(encoding, payload))
                    cases += 1
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    want = expected(policy, who, target, encoding)
                    for problem in judge(response, want, policy, who, target, world):
                        failures.append(f"{method} {path} [{who.label}, {encoding}]: {problem}")
                    response.close()  # static files are streamed from an open file
                    if method not in ("GET", "HEAD") and 200 <= response.status_code < 300:
                        restore(world)
    breaks = sum("leak" in f for f in failures)
    server_errors = sum(status for code, status in statuses.items() if code >= 500)
    print(f"\n{world.backend}: {cases} cases, {breaks} isolation breaks, {server_errors} 5xx; "
          f"statuses {dict(sorted(statuses.items()))}")
    assert cases > 1000
    assert not failures, f"{len(failures)} of {cases} cases failed:\n" + "\n".join(failures[:40])
