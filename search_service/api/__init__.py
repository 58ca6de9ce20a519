"""Flask blueprints, one per resource. Views parse, call a pipeline, and shape the response."""

from __future__ import annotations

from flask import Flask, current_app, request
from pydantic import BaseModel

from search_service.api.body import current_body
from search_service.errors import InvalidRequestError
from search_service.limits import check_body


def services():
    return current_app.extensions["search_service"]


def parse_body(schema: type[BaseModel]):
    """Validate the request's JSON body (parsed once, by the gate: `api/body.py`) against
    `schema`; mistyped bodies become 400s."""
    parsed = current_body()
    if parsed.kind != "json":
        raise InvalidRequestError("the request body must be a JSON object", code="invalid_json")
    body = schema.model_validate(parsed.json)
    check_body(body)  # the configured RAG_MAX_* caps
    return body


def int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(f"query parameter {name!r} must be an integer") from None
    if not minimum <= value <= maximum:
        raise InvalidRequestError(f"query parameter {name!r} must be between {minimum} and {maximum}")
    return value


def register_blueprints(app: Flask) -> None:
    from search_service.api import (
        collections,
        compat,
        docs,
        embeddings,
        health,
        jobs,
        metrics,
        playground,
        search,
    )

    for module in (health, collections, jobs, search, compat, embeddings, metrics, docs, playground):
        app.register_blueprint(module.bp)
