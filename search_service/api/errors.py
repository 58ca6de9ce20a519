"""The one place that turns exceptions into `{"error": {"code", "message"}}` responses."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from search_service.errors import ServiceError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


def error_response(status: int, code: str, message: str, **extra):
    body = {"error": {"code": code, "message": message, **extra}}
    return jsonify(body), status


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        if exc.status >= 500 and not exc.public:  # the detail (paths, settings) goes to the log
            log.error("%s: %s", exc.code, exc.message, exc_info=exc)
            return error_response(exc.status, exc.code, server_error_message())
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, getattr(exc, "detail", exc.message))
        extra = {"fields": exc.fields} if getattr(exc, "fields", None) else {}
        response, status = error_response(exc.status, exc.code, exc.message, **extra)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response, status

    @app.errorhandler(ValidationError)
    def validation_error(exc: ValidationError):
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()[:20]
        ]
        return error_response(400, "invalid_request", describe_validation_error(exc), fields=fields)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name if status < 500 else server_error_message()
        response, status = error_response(status, code, message)
        for header in ("Allow", "Retry-After"):
            if exc.get_response().headers.get(header):
                response.headers[header] = exc.get_response().headers[header]
        return response, status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")  # with the request id (observability's log records)
        return error_response(500, "internal_error", server_error_message())


def server_error_message() -> str:
    """What a 5xx says: no SQL, parameters, paths or traceback; the request id finds them in the log."""
    from search_service.logs import request_id

    return f"internal server error; see the server log for request id {request_id() or 'unknown'}"
