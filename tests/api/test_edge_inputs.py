"""Inputs that never 500: checked where the body is parsed, on every route, SQLite and PostgreSQL.

Deep nesting, NUL, lone surrogates, NaN/Infinity and out-of-range numbers in JSON bodies,
multipart fields and path/query parameters are 400s naming the field; odd document ids and key
names break the identifier rule (400); stored ids that the rule now refuses stay reachable with
`?id=`; the order of checks is the documented one; responses are strict JSON.
"""

from __future__ import annotations

import io
import json

import pytest

from ingestion.pipeline import SourceDocument
from search_service.auth import POLICIES
from search_service.errors import InvalidRequestError
from search_service.store import keys as key_store
from tests.support.tenants import ALPHA, BETA, GHOST, running_world

MAX_UPLOAD = 40_000
NEST = "[" * 10_000 + "]" * 10_000
BAD_JSON = {  # raw body -> the field the 400 must name
    "depth-10000": ('{"x": ' + NEST + "}", "body"),
    "depth-40": ('{"x": ' + "[" * 40 + "]" * 40 + "}", "x[0]"),
    "nul": ('{"x": "a\\u0000b"}', "x"),
    "surrogate": ('{"x": "\\ud800"}', "x"),
    "nul-key": ('{"a\\u0000": 1}', "key"),
    "nan": ('{"x": NaN}', "x"),
    "infinity": ('{"x": Infinity}', "x"),
    "-infinity": ('{"x": -Infinity}', "x"),
    "overflow": ('{"x": 1e400}', "x"),
    "big-int": ('{"x": 1' + "0" * 30 + "}", "x"),
    "nested-field": ('{"documents": [{"metadata": {"a": 1e400}}]}', "documents[0].metadata.a"),
}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request, tmp_path_factory, minilm_path, minilm_embedder, tiny_reranker):
    with running_world(request.param, tmp_path_factory.mktemp("edges"), minilm_path, minilm_embedder,
                       tiny_reranker, max_upload_bytes=MAX_UPLOAD) as built:
        built.client = built.app.test_client()
        yield built


def key(world, label: str) -> dict:
    return next(p.headers for p in world.principals if p.label == label)


def gated_routes(world, want=None):
    for rule in world.app.url_map.iter_rules():
        policy = POLICIES.get(rule.endpoint)
        if policy is None or policy.role is None:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if want is None or want(rule, policy):
                yield rule, method, policy


def path(rule, **values) -> str:
    base = {"name": ALPHA, "document_id": "alpha-doc", "job_id": "00000000-0000-4000-8000-000000000000"}
    return rule.build({arg: values.get(arg, base.get(arg, "x")) for arg in rule.arguments},
                      append_unknown=False)[1]


def assert_400(response, field: str):
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["error"]["code"] in ("invalid_request", "invalid_json"), body
    assert field in body["error"]["message"], body


@pytest.mark.parametrize("case", BAD_JSON)
def test_json_bodies_are_checked_on_every_json_route(world, case):
    raw, field = BAD_JSON[case]
    routes = list(gated_routes(world, lambda rule, policy: "json" in policy.body))
    assert len(routes) >= 5
    for rule, method, _ in routes:
        response = world.client.open(path(rule), method=method, headers=world.root, data=raw,
                                     content_type="application/json")
        assert_400(response, field)


def test_path_and_query_parameters_with_nul_on_every_route(world):
    checked = 0
    for rule, method, policy in gated_routes(world):
        extra = {"data": "{}", "content_type": "application/json"} if policy.body else {}
        for arg in rule.arguments:
            response = world.client.open(path(rule, **{arg: "a\x00b"}), method=method,
                                         headers=world.root, **extra)
            assert_400(response, arg)
            checked += 1
        response = world.client.open(path(rule) + "?limit=1%00", method=method, headers=world.root, **extra)
        assert_400(response, "limit")
        checked += 1
    assert checked > 20


@pytest.mark.parametrize("fields, field", [
    ({"metadata": "[" * 1000 + "]" * 1000}, "metadata"),
    ({"metadata": '{"a": {"b": NaN}}'}, "metadata.a.b"),
    ({"metadata": '{"a": 1e999}'}, "metadata.a"),
    ({"id": "doc\x00one"}, "id"),
    ({"filename": "a\x00.txt"}, "file.filename"),
])
def test_multipart_fields_are_checked(world, fields, field):
    fields = dict(fields)  # the parameter is shared by both backends' runs
    filename = fields.pop("filename", "a.txt")
    data = {**fields, "file": (io.BytesIO(b"hello"), filename)}
    response = world.client.post(f"/v1/collections/{ALPHA}/documents", headers=world.root, data=data,
                                 content_type="multipart/form-data")
    assert_400(response, field)


def test_a_multipart_part_without_a_name_is_not_a_500(world):
    boundary = "b0undary"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data\r\n\r\nnameless\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n\x00.txt\"\r\n"
           f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n").encode()
    response = world.client.post(f"/v1/collections/{ALPHA}/documents", headers=world.root, data=raw,
                                 content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400, response.get_json()


@pytest.mark.parametrize("how, value, field", [
    ("json", "/etc/passwd", "documents[0].id"),
    ("json", "line\nbreak", "documents[0].id"),
    ("json", "tab\tid", "documents[0].id"),
    ("multipart", "/leading", "id"),
    ("filename", "/leading.txt", "file.filename"),
])
def test_document_ids_follow_the_rule(world, how, value, field):
    url = f"/v1/collections/{ALPHA}/documents"
    if how == "json":
        response = world.client.post(url, headers=world.root,
                                     json={"documents": [{"id": value, "text": "t"}]})
    else:
        form = {"id": value} if how == "multipart" else {}
        name = value if how == "filename" else "a.txt"
        response = world.client.post(url, headers=world.root, content_type="multipart/form-data",
                                     data={**form, "file": (io.BytesIO(b"hello"), name)})
    body = response.get_json()
    assert response.status_code == 400 and body["error"]["code"] == "invalid_document_id", body
    assert field in body["error"]["message"]


@pytest.mark.parametrize("name", ["/root", "a\x01b", "x" * 129, ""])
def test_key_names_follow_the_rule(world, name):
    with world.services.database.session() as session, pytest.raises(InvalidRequestError) as caught:
        key_store.create_key(session, name=name, role="read", collections="*")
    assert caught.value.code == "invalid_key_name"


def test_collection_names_follow_the_rule(world):
    for name in ("/lead", "a\x01b", "x" * 65):
        response = world.client.post("/v1/collections", headers=world.root, json={"name": name})
        assert response.get_json()["error"]["code"] == "invalid_collection_name", name


def test_ids_stored_before_the_rule_stay_reachable(world):
    """The CLI ingests whatever ids it was given; `?id=` fetches and deletes any of them."""
    legacy = ["/legacy/leading-slash", "ctrl\x01id", "trailing/"]
    world.services.ingestion.ingest(ALPHA, [
        SourceDocument(external_id=i, data=b"Legacy text.", filename="l.txt") for i in legacy])
    base = f"/v1/collections/{ALPHA}/documents"
    for document_id in legacy:
        got = world.client.get(base, headers=world.root, query_string={"id": document_id})
        assert got.status_code == 200 and got.get_json()["document_id"] == document_id
        assert got.get_json()["chunks"], got.get_json()
        gone = world.client.delete(base, headers=world.root, query_string={"id": document_id})
        assert gone.status_code == 204
        again = world.client.get(base, headers=world.root, query_string={"id": document_id})
        assert again.get_json()["error"]["code"] == "document_not_found"
    missing = world.client.delete(base, headers=world.root)
    assert missing.get_json()["error"]["code"] == "missing_document_id"
    other = world.client.get(f"/v1/collections/{BETA}/documents", query_string={"id": "beta-doc-xq7"},
                             headers=key(world, "admin@own"))
    assert other.get_json()["error"]["code"] == "collection_not_found"


def test_the_order_of_checks(world):
    client, own, everything = world.client, key(world, "read@own"), key(world, "read@all")
    search = json.dumps({"collection": BETA})
    big = "x" * (MAX_UPLOAD + 1)
    steps = [  # (headers, method, path, body, content type) -> status, code
        ({}, "POST", "/v1/search", big, "text/plain", 401, "unauthorized"),
        (own, "POST", "/v1/search", big, "text/plain", 413, "payload_too_large"),
        (own, "POST", "/v1/search", search, "text/plain", 415, "unsupported_media_type"),
        (own, "POST", "/v1/search", None, None, 415, "unsupported_media_type"),
        (own, "POST", "/v1/search", '{"collection": "beta-team",', "application/json", 400, "invalid_request"),
        (own, "POST", "/v1/search", search, "application/json", 404, "collection_not_found"),
        (own, "DELETE", f"/v1/collections/{ALPHA}/documents/alpha-doc", None, None, 403, "forbidden"),
        (everything, "DELETE", f"/v1/collections/{GHOST}", None, None, 404, "collection_not_found"),
        (everything, "POST", "/v1/search", json.dumps({"collection": ALPHA}), "application/json", 400,
         "invalid_request"),
        (key(world, "admin@own"), "GET", "/metrics", None, None, 403, "forbidden"),
    ]
    for headers, method, url, data, content_type, status, code in steps:
        response = client.open(url, method=method, headers=headers, data=data, content_type=content_type)
        assert (response.status_code, response.get_json()["error"]["code"]) == (status, code), (url, data)
    metrics = client.get("/metrics", headers=key(world, "admin@all"))
    assert metrics.status_code == 200 and BETA in metrics.get_data(as_text=True)


@pytest.mark.parametrize("content_type, data", [
    ("application/json; charset=utf-8", '{"collection": "alpha-team", "query": "bamboo café"}'.encode()),
    ("application/json; charset=latin-1", '{"collection": "alpha-team", "query": "bamboo café"}'.encode("latin-1")),
    ("application/json;charset=UTF-8", b'{"collection": "alpha-team", "query": "bamboo"}'),
    ("application/vnd.search+json", b'{"collection": "alpha-team", "query": "bamboo"}'),
])
def test_json_with_any_charset_parameter(world, content_type, data):
    response = world.client.post("/v1/search", headers=world.root, data=data, content_type=content_type)
    assert response.status_code == 200, response.get_json()
    assert "bamboo" in response.get_json()["query"]


def test_responses_are_strict_json(world):
    dumps = world.app.json.dumps
    assert dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": (float("-inf"),)}) == \
        '{"a": null, "b": [null, 1.5], "c": [null]}'
    if world.backend == "sqlite":  # PostgreSQL's JSON type never held Infinity; SQLite's text did
        from search_service.store import collections as store

        world.services.ingestion.ingest(ALPHA, [SourceDocument(
            external_id="inf-meta", data=b"Text.", filename="i.txt", metadata={"x": float("inf")})])
        response = world.client.get(f"/v1/collections/{ALPHA}/documents/inf-meta", headers=world.root)
        strict = json.loads(response.get_data(as_text=True), parse_constant=pytest.fail)
        assert strict["metadata"] == {"x": None}
        with world.services.database.session() as session:
            collection = store.get_collection(session, ALPHA)
            store.delete_document(session, collection, "inf-meta")


def test_a_server_error_says_what_not_how(migrated_url, app_factory, caplog):
    """A real database failure (a dropped table): the client gets the request id, the log the SQL."""
    from sqlalchemy import text

    app = app_factory(migrated_url)
    client = app.test_client()
    assert client.post("/v1/collections", json={"name": "docs"}).status_code == 201
    services = app.extensions["search_service"]
    with services.database.engine.begin() as connection:
        connection.execute(text("DROP TABLE chunks"))
        connection.execute(text("DROP TABLE documents"))
    response = client.get("/v1/collections/docs/documents", headers={"X-Request-ID": "edge-req-42"})
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error" and "edge-req-42" in body["error"]["message"]
    raw = response.get_data(as_text=True)
    for secret in ("SELECT", "FROM", "documents.", "Traceback", "sqlalchemy", "psycopg", str(migrated_url)):
        assert secret not in raw
    assert any("SELECT" in (record.exc_text or "") or "SELECT" in str(record.exc_info) for record in caplog.records)
