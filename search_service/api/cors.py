"""CORS for browser chat frontends: origins from `RAG_CORS_ORIGINS` (`*` for any), none by default.

Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered here, before auth: a
browser never sends credentials on a preflight.
"""

from __future__ import annotations

from flask import Flask, current_app, request

ALLOW_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-ID"
EXPOSE_HEADERS = "X-Request-ID, Retry-After, Location"
METHODS = "GET, POST, DELETE, OPTIONS"


def _allowed_origin() -> str | None:
    origin = request.headers.get("Origin")
    origins = current_app.extensions["search_service"].settings.cors_origins
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin.rstrip("/") in origins else None


def preflight():
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    origin = _allowed_origin()
    if origin is None:
        return "", 204  # no CORS headers: the browser blocks the request
    return "", 204, {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def add_headers(response):
    origin = _allowed_origin()
    if origin is not None and "Access-Control-Allow-Origin" not in response.headers:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response.headers.add("Vary", "Origin")
    return response


def init_app(app: Flask) -> None:
    app.before_request(preflight)
    app.after_request(add_headers)
