"""schemathesis over the whole HTTP surface, on SQLite and PostgreSQL.

- Every operation in /openapi.json, with data the spec allows (positive) and data it forbids
  (negative, NUL bytes included): no 5xx, every error in the one JSON shape, every status declared,
  every response valid against its schema and strict JSON.
- The other content types: each operation that takes a JSON body gets a valid body as text/plain,
  a form, XML, multipart and with no Content-Type: 415 (`unsupported_media_type`); JSON with a
  charset is accepted.
- Path parameters with NUL, `/`, `%`, unicode, invalid UTF-8 and very long values: a 4xx in the
  one shape, never a 5xx.
- The stateful run follows the links the OpenAPI document declares (create -> upload -> job ->
  search -> delete), with an ingestion worker running, under the same checks.
"""

from __future__ import annotations

import json
import math
import threading
from urllib.parse import quote

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 20  # per operation and mode; both databases
STATEFUL_EXAMPLES = 6
HYPOTHESIS = {"deadline": None, "database": None, "derandomize": True, "suppress_health_check": list(HealthCheck)}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request, tmp_path_factory, minilm_path, minilm_embedder, tiny_reranker):
    from ingestion.pipeline import SourceDocument
    from search_service.app import create_app
    from search_service.cli.ingest import make_worker
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate
    from tests.conftest import _postgres_database

    data = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    databases = _postgres_database() if request.param == "postgres" else _sqlite(data)
    url = next(databases)
    migrate(url)
    # Small caps keep each generated call cheap on CPU; the spec states them, so schemathesis knows.
    config = Settings(data_dir=data, database_url=url, embedder_model=minilm_path, reranker_model="tiny",
                      device="cpu", auth="off", max_rerank_documents=8, max_embedding_inputs=8,
                      max_query_chars=512, max_candidates=50, max_top_k=20, worker_poll_seconds=0.05)
    services = build_services(config, embedder=minilm_embedder, rerankers=RerankerSet({"tiny": tiny_reranker}, "tiny"))
    services.ingestion.ingest("docs", [SourceDocument(external_id="a", data=b"Pandas eat bamboo.", filename="a.txt")])
    worker = make_worker(services, config)  # uploads made by the stateful run get indexed
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    app = create_app(services=services)
    yield app
    worker.stopping.set()
    thread.join(timeout=30)
    services.close()
    databases.close()


def _sqlite(data):
    yield f"sqlite:///{data / 'rag.db'}"


def strict_json(text: str):
    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=reject)


def one_error_shape(ctx, response, case):
    """Every error is {"error": {"code": str, "message": str}} and every JSON body is strict JSON."""
    content_type = response.headers.get("content-type", [""])[0] if isinstance(response.headers.get("content-type"), list) else response.headers.get("content-type", "")
    if "json" in (content_type or ""):
        try:
            strict_json(response.text)
        except ValueError as exc:
            raise AssertionError(f"not strict JSON: {exc}: {response.text[:200]}") from None
    if response.status_code >= 400:
        try:
            error = strict_json(response.text)["error"]
        except (ValueError, KeyError, TypeError):
            raise AssertionError(f"{response.status_code} not in the error shape: {response.text[:200]}") from None
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), response.text[:200]
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, one_error_shape]


def load_schema(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.config.generation.update(allow_x00=True)  # NUL bytes in generated strings (issue 14)
    return schema


PINNED = {"name": "docs", "document_id": "a", "job_id": "00000000-0000-0000-0000-000000000000"}  # the seed


def fuzz(operation, mode, failures: list, statuses: dict) -> None:
    """Positive data on a read or write of the seeded collection (random names are 404s, which the
    negative mode and the odd-path test cover); deletes keep random names so the seed survives."""
    names = {p.name for p in operation.iter_parameters() if p.location.value == "path"}
    pinned = mode == GenerationMode.POSITIVE and names and operation.method.upper() != "DELETE"
    strategy = operation.as_strategy(generation_mode=mode, path_parameters={n: PINNED[n] for n in names} if pinned else None)

    @settings(max_examples=MAX_EXAMPLES, phases=[Phase.explicit, Phase.generate], **HYPOTHESIS)
    @given(strategy)
    def run(case):
        response = case.call()
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported together below
            failures.append(f"[{mode.value}] {case.method} {case.formatted_path}: {str(exc)[:600]}")

    try:
        run()
    except Unsatisfiable:  # negative mode, nothing in this operation can be made invalid
        assert mode == GenerationMode.NEGATIVE, operation.label


def test_every_operation_positive_and_negative(app):
    schema = load_schema(app)
    failures, statuses = [], {}
    operations = [op.ok() for op in schema.get_all_operations()]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:
            fuzz(operation, mode, failures, statuses)
    print("statuses:", dict(sorted(statuses.items())))
    assert not failures, "\n".join(failures[:15])
    assert sum(statuses.values()) >= 10 * len(operations)  # it really ran
    assert statuses.get(200, 0) + statuses.get(201, 0) + statuses.get(202, 0) > 60  # and got past validation


# One valid JSON body per operation that takes one; a new operation fails the test until listed.
VALID_BODIES = {
    "collections_create": lambda n: {"name": f"ct-{n}"},
    "collections_upload": lambda n: {"documents": [{"id": f"ct-{n}", "text": "Pandas eat bamboo."}]},
    "search_search": lambda n: {"collection": "docs", "query": "what do pandas eat"},
    "search_rerank": lambda n: {"query": "what do pandas eat", "documents": ["Pandas eat bamboo."]},
    "embeddings_embeddings": lambda n: {"input": "pandas"},
    "compat_rerank_v2": lambda n: {"model": "tiny", "query": "what do pandas eat", "documents": ["Pandas eat bamboo."]},
    "compat_rerank_any": lambda n: {"query": "what do pandas eat", "texts": ["Pandas eat bamboo."]},
}


def _operations_with_body(client):
    spec = client.get("/openapi.json").get_json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if "requestBody" in operation:
                yield path.replace("{name}", "docs"), method, operation


def test_other_content_types_are_415(app):
    client = app.test_client()
    seen, problems, n = set(), [], 0
    for path, method, operation in _operations_with_body(client):
        seen.add(operation["operationId"])
        assert operation["operationId"] in VALID_BODIES, f"add a valid body for {operation['operationId']}"
        takes = set(operation["requestBody"]["content"])
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml", None,
                             "multipart/form-data; boundary=x", "application/json; charset=utf-8"):
            n += 1
            body = json.dumps(VALID_BODIES[operation["operationId"]](n)).encode()
            headers = {"Content-Type": content_type} if content_type else {}
            response = client.open(path, method=method.upper(), data=body, headers=headers)
            accepted = content_type is not None and content_type.split(";")[0] in takes and content_type.startswith("application/json")
            want = {200, 201, 202} if accepted else {415}
            if content_type and content_type.startswith("multipart") and "multipart/form-data" in takes:
                want = {400}  # a broken multipart body for an operation that takes multipart
            if response.status_code not in want:
                problems.append(f"{method.upper()} {path} as {content_type}: {response.status_code} (want {sorted(want)}) {response.get_data(as_text=True)[:150]}")
            elif response.status_code >= 400:
                one_error_shape(None, response, None)
                if response.status_code == 415:
                    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert seen == set(VALID_BODIES)
    assert not problems, "\n".join(problems)


def test_multipart_parts_without_a_name(app):
    """Found by the fuzzer: a multipart part with no `name` (werkzeug gives None) was a 500."""
    client = app.test_client()
    for disposition in (b"form-data", b'form-data; filename="a.txt"', b'form-data; name=""'):
        body = b"--x\r\nContent-Disposition: " + disposition + b"\r\n\r\nPandas.\r\n--x--\r\n"
        response = client.post("/v1/collections/docs/documents", data=body,
                               headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert response.status_code == 400, (disposition, response.get_data(as_text=True)[:200])
        one_error_shape(None, response, None)


def test_a_doubled_slash_is_not_redirected_to_another_document(app):
    """DELETE .../documents/%2Fa was a 308 to .../documents/a, which clients follow with DELETE."""
    client = app.test_client()
    for method in ("DELETE", "GET"):
        response = client.open("/v1/collections/docs/documents/%2Fa", method=method)
        assert response.status_code == 404, response.status_code
        one_error_shape(None, response, None)
    assert client.get("/v1/collections/docs/documents/a").status_code == 200
    assert client.get("/v1/collections//docs").status_code == 404


ODD_VALUES = ["\x00", "a\x00b", "a/b", "/lead", "%", "%25", "%2F", "100%", "ü名前🙂", "..", ".", " ", "a b", "\n",
              "x" * 5000, "é" * 3000]
RAW_ODD = ["%ED%A0%80", "%FF%FE", "%C0%AF"]  # a lone surrogate and invalid UTF-8, sent as raw escapes


def test_odd_path_parameters(app):
    """Every route with path parameters, every method, each parameter replaced by an odd value."""
    client = app.test_client()
    fill = {"name": "docs", "document_id": "a", "job_id": "00000000-0000-0000-0000-000000000000"}
    problems, count = [], 0
    for rule in app.url_map.iter_rules():
        if not rule.arguments or rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for argument in sorted(rule.arguments):
                for value in [quote(v, safe="") for v in ODD_VALUES] + RAW_ODD:
                    values = {a: quote(fill.get(a, "x"), safe="") for a in rule.arguments}
                    values[argument] = value
                    path = rule.rule
                    for a, v in values.items():
                        path = path.replace(f"<path:{a}>", v).replace(f"<{a}>", v)
                    count += 1
                    response = client.open(path, method=method, json={"documents": [{"id": "z", "text": "z"}]}
                                           if method == "POST" else None)
                    if response.status_code >= 500 or response.status_code < 400:
                        problems.append(f"{method} {path[:120]}: {response.status_code} {response.get_data(as_text=True)[:150]}")
                        continue
                    try:
                        one_error_shape(None, response, None)
                    except AssertionError as exc:
                        problems.append(f"{method} {path[:120]}: {exc}")
    assert count > 100
    assert not problems, "\n".join(problems[:20])


def test_stateful_links(app):
    """Follow the declared links: create -> upload -> job -> search -> delete, under the same checks."""
    schema = load_schema(app)
    spec = app.test_client().get("/openapi.json").get_json()
    links = {op["operationId"]: {name for response in op["responses"].values() for name in response.get("links", {})}
             for methods in spec["paths"].values() for op in methods.values()}
    assert {"UploadDocuments", "SearchCollection", "DeleteCollection"} <= links["collections_create"]
    assert {"ShowJob"} <= links["collections_upload"] and {"SearchCollection"} <= links["jobs_show"]
    machine = schema.as_state_machine()
    calls: dict[str, int] = {}

    class Machine(machine):
        def validate_response(self, response, case, additional_checks=None, **kwargs):
            key = f"{case.method} {case.path}"
            calls[key] = calls.get(key, 0) + 1
            case.validate_response(response, checks=CHECKS)

    Machine.run(settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=8,
                                  phases=[Phase.generate], **HYPOTHESIS))
    print("stateful calls:", calls)
    assert calls.get("POST /v1/collections", 0) > 0 and calls.get("POST /v1/collections/{name}/documents", 0) > 0
    assert calls.get("GET /v1/jobs/{job_id}", 0) + calls.get("POST /v1/search", 0) > 0


def test_strict_json_helper_rejects_non_finite():
    with pytest.raises(ValueError):
        strict_json('{"x": Infinity}')
    assert math.isfinite(strict_json('{"x": 1e300}')["x"])
