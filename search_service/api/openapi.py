"""The OpenAPI 3.1 document, generated from the pydantic models the views validate with.

Routes come from the app's URL map (so none is forgotten); `OPERATIONS` adds, per endpoint, the
request model (the very class `parse_body` validates against), the response model
(`api/responses.py`), query parameters and a summary. The configured caps (RAG_MAX_*) replace
the schemas' hard ceilings, so the document states what this server accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from search_service.api import compat_schemas as c
from search_service.api import responses as r
from search_service.api import schemas as s
from search_service.api.embeddings import EmbeddingsRequest
from search_service.auth import POLICIES
from search_service.store.models import JOB_STATES


@dataclass(frozen=True)
class Operation:
    summary: str
    response: type[BaseModel] | None
    request: type[BaseModel] | None = None
    status: int = 200
    params: tuple[tuple[str, str, dict], ...] = ()  # (name, description, schema)
    multipart: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


PAGE = (
    ("limit", "page size", {"type": "integer", "minimum": 1, "maximum": s.MAX_PAGE, "default": 50}),
    ("offset", "rows to skip", {"type": "integer", "minimum": 0, "maximum": 2**31, "default": 0}),
)
DOCUMENT_ID = ("id", "a document id (also one the path form cannot carry, such as '/a')",
               {"type": "string", "minLength": 1})
OPERATIONS: dict[str, Operation] = {
    "health.healthz": Operation("Liveness", r.Health, tags=("health",)),
    "health.readyz": Operation("Readiness: models loaded, database reachable", r.Ready, tags=("health",)),
    "collections.index": Operation("List the collections this key may see", r.CollectionList, tags=("collections",)),
    "collections.create": Operation("Create a collection", r.Collection, s.CollectionCreate, 201, tags=("collections",)),
    "collections.show": Operation("Show a collection", r.Collection, tags=("collections",)),
    "collections.delete_collection": Operation("Delete a collection", None, status=204, tags=("collections",)),
    "collections.documents": Operation(
        "List documents; with ?id= show one (any stored id)", r.DocumentList,
        params=PAGE + (DOCUMENT_ID,), tags=("documents",),
    ),
    "collections.document": Operation("Show a document with its chunks", r.Document, tags=("documents",)),
    "collections.delete_document": Operation("Delete a document", None, status=204, tags=("documents",)),
    "collections.delete_document_query": Operation(
        "Delete the document named by ?id= (any stored id)", None, status=204,
        params=(DOCUMENT_ID,), tags=("documents",),
    ),
    "collections.upload": Operation(
        "Queue documents for ingestion (JSON texts or a multipart file)", r.JobAccepted, s.DocumentsCreate, 202,
        multipart=True, tags=("documents",),
    ),
    "collections.jobs": Operation(
        "List a collection's jobs", r.JobList,
        params=PAGE + (("status", "only jobs in this state",
                        {"type": "string", "enum": list(JOB_STATES)}),),
        tags=("jobs",),
    ),
    "jobs.show": Operation("Show an ingestion job", r.Job, tags=("jobs",)),
    "search.search": Operation("Two-stage search: retrieve, rerank, top-k", r.SearchResponse, s.SearchRequest, tags=("search",)),
    "search.rerank": Operation("Rerank documents (Cohere/Jina-compatible)", r.RerankResponse, s.RerankRequest, tags=("search",)),
    "compat.rerank_v2": Operation(
        "Rerank documents (Cohere v2: cohere.ClientV2, LangChain and LlamaIndex CohereRerank)",
        c.CohereV2RerankResponse, c.CohereV2RerankRequest, tags=("search",),
    ),
    "compat.rerank_any": Operation(
        "Rerank (text-embeddings-inference with `texts`: a bare array; Cohere with `documents`: as /v1/rerank)",
        c.RerankAnyResponse, c.RerankAnyRequest, tags=("search",),
    ),
    "search.rerankers": Operation("Loaded rerankers and their options", r.RerankerList, tags=("models",)),
    "embeddings.embeddings": Operation("Embeddings (OpenAI-compatible)", r.EmbeddingsResponse, EmbeddingsRequest, tags=("models",)),
    "embeddings.models": Operation("Loaded models with family and device", r.ModelList, tags=("models",)),
    "observability.metrics": Operation("Prometheus metrics (text format)", None, tags=("operations",)),
}
ERRORS = {
    400: "invalid request", 401: "missing or invalid API key", 403: "the key's role is insufficient",
    404: "not found (also: a collection this key does not cover)", 413: "body too large",
    415: "a body type the endpoint does not take (`unsupported_media_type`)",
    429: "rate limited, or the reranker queue is full (`overloaded`); see Retry-After",
}
# Remote engines (docs/scaling.md "Remote engines"): what an endpoint answers when one fails.
_RERANK_REMOTE = {
    502: "a remote reranker refused the request or answered in a shape its protocol does not have "
         "(`reranker_remote_error`)",
    503: "a remote reranker is unavailable (`reranker_unavailable`: down, past its deadline, failing, "
         "or its circuit breaker is open; see Retry-After). /v1/search with `rerank_fallback: dense` "
         "answers with the retrieval order instead",
}
_EMBED_REMOTE = {
    502: "the remote embedder refused the request (`embedder_remote_error`)",
    503: "the remote embedder is unavailable (`embedder_unavailable`; see Retry-After)",
}
REMOTE_ERRORS = {
    "search.search": {**_RERANK_REMOTE, 503: _RERANK_REMOTE[503] + "; or the remote embedder is "
                      "unavailable (`embedder_unavailable`)"},
    "search.rerank": _RERANK_REMOTE, "compat.rerank_v2": _RERANK_REMOTE, "compat.rerank_any": _RERANK_REMOTE,
    "embeddings.embeddings": _EMBED_REMOTE,
}
# OpenAPI links: how a client goes on from one answer (create -> upload -> job -> search -> delete).
# Schemathesis's stateful run follows them; a reader of /docs sees the workflow.
_NAME = "$response.body#/name"
_COLLECTION = "$response.body#/collection"
LINKS: dict[str, dict[str, dict]] = {
    "collections.create": {
        "UploadDocuments": {"operationId": "collections_upload", "parameters": {"name": _NAME}},
        "ShowCollection": {"operationId": "collections_show", "parameters": {"name": _NAME}},
        "SearchCollection": {"operationId": "search_search", "requestBody": {"collection": _NAME}},
        "DeleteCollection": {"operationId": "collections_delete_collection", "parameters": {"name": _NAME}},
    },
    "collections.upload": {
        "ShowJob": {"operationId": "jobs_show", "parameters": {"job_id": "$response.body#/job_id"}},
        "ListJobs": {"operationId": "collections_jobs", "parameters": {"name": _COLLECTION}},
    },
    "jobs.show": {
        "ListDocuments": {"operationId": "collections_documents", "parameters": {"name": _COLLECTION}},
        "SearchCollection": {"operationId": "search_search", "requestBody": {"collection": _COLLECTION}},
        "DeleteCollection": {"operationId": "collections_delete_collection", "parameters": {"name": _COLLECTION}},
    },
    "collections.documents": {
        "ShowDocument": {"operationId": "collections_document", "parameters": {
            "name": "$request.path.name", "document_id": "$response.body#/documents/0/document_id"}},
        "DeleteDocument": {"operationId": "collections_delete_document", "parameters": {
            "name": "$request.path.name", "document_id": "$response.body#/documents/0/document_id"}},
    },
    "search.search": {
        "ShowDocument": {"operationId": "collections_document", "parameters": {
            "name": _COLLECTION, "document_id": "$response.body#/results/0/document_id"}},
        "DeleteDocument": {"operationId": "collections_delete_document", "parameters": {
            "name": _COLLECTION, "document_id": "$response.body#/results/0/document_id"}},
        "DeleteCollection": {"operationId": "collections_delete_collection", "parameters": {"name": _COLLECTION}},
    },
}
RULE_ARG = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")


def _schemas(settings) -> tuple[dict[str, dict], dict]:
    models = {op.request for op in OPERATIONS.values() if op.request} | {
        op.response for op in OPERATIONS.values() if op.response} | {r.Error}
    keyed = sorted(models, key=lambda m: m.__name__)
    refs, top = models_json_schema(
        [(m, "validation") for m in keyed], ref_template="#/components/schemas/{model}"
    )
    components = dict(top.get("$defs", {}))
    _apply_caps(components, settings)
    return {m.__name__: refs[(m, "validation")] for m in keyed}, components


def _cap(schema: dict, prop: str, key: str, value: int) -> None:
    target = schema.get("properties", {}).get(prop)
    if not target:
        return
    for option in [target, *target.get("anyOf", [])]:
        if key in option:
            option[key] = min(option[key], value)


def _apply_caps(components: dict, settings) -> None:
    for name in ("SearchRequest", "RerankRequest", "CohereV2RerankRequest", "TeiRerankRequest"):
        schema = components.get(name, {})
        _cap(schema, "query", "maxLength", settings.max_query_chars)
        _cap(schema, "top_k", "maximum", settings.max_top_k)
        _cap(schema, "candidates", "maximum", settings.max_candidates)
        _cap(schema, "documents", "maxItems", settings.max_rerank_documents)
        _cap(schema, "texts", "maxItems", settings.max_rerank_documents)
    _cap(components.get("EmbeddingsRequest", {}), "input", "maxItems", settings.max_embedding_inputs)


def _operation(endpoint: str, method: str, path_args: list[str], refs: dict, auth_on: bool) -> dict:
    op = OPERATIONS.get(endpoint) or Operation(endpoint, None)
    body: dict = {"summary": op.summary, "operationId": endpoint.replace(".", "_"), "tags": list(op.tags)}
    params = [
        {"name": arg, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, **({"pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"} if arg == "name" else {})}}
        for arg in path_args
    ]
    params += [{"name": n, "in": "query", "required": False, "description": d, "schema": sch} for n, d, sch in op.params]
    if params:
        body["parameters"] = params
    if op.request is not None:
        content = {"application/json": {"schema": refs[op.request.__name__]}}
        if op.multipart:
            content["multipart/form-data"] = {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"},
                               "id": {"type": "string", "maxLength": 1024},
                               "metadata": {"type": "string", "description": "a JSON object"}},
            }}
        body["requestBody"] = {"required": True, "content": content}
    success: dict = {"description": "success"}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": refs[op.response.__name__]}}
    elif endpoint == "observability.metrics":
        success["content"] = {"text/plain": {"schema": {"type": "string"}}}
    if endpoint in LINKS:
        success["links"] = LINKS[endpoint]
    error = {"content": {"application/json": {"schema": refs["Error"]}}}
    body["responses"] = {str(op.status): success}
    policy = POLICIES.get(endpoint)
    needs_key = auth_on and (policy is None or policy.role is not None)
    for status, description in ERRORS.items():
        if (status in (401, 403) and not needs_key) or (status == 415 and op.request is None):
            continue
        body["responses"][str(status)] = {"description": description, **error}
    if endpoint == "collections.create":
        body["responses"]["409"] = {"description": "the collection exists", **error}
    for status, description in REMOTE_ERRORS.get(endpoint, {}).items():
        body["responses"][str(status)] = {"description": description, **error}
    if needs_key:
        body["security"] = [{"bearer": []}, {"apiKey": []}]
        if policy is not None:
            body["description"] = f"Needs a key with role `{policy.role}` or above."
    else:
        body["security"] = []
    return body


def build_spec(app: Flask) -> dict:
    settings = app.extensions["search_service"].settings
    refs, components = _schemas(settings)
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if rule.endpoint in ("static", "docs.openapi", "docs.docs") or rule.endpoint.startswith("playground."):
            continue
        path = RULE_ARG.sub(r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                rule.endpoint, method, list(rule.arguments), refs, settings.auth_enabled
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "search-service",
            "version": "0.1.0",
            "description": "Rerank-first retrieval for RAG. Send `Authorization: Bearer rag_...` "
                           "(keys: `search-service keys create`).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
