"""Domain errors. Each carries the HTTP status and the slug the API puts in its error body."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to its users."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class ModelLoadError(ServiceError):
    code = "model_load_failed"
    status = 503


class ConfigurationError(ServiceError):
    code = "invalid_configuration"
    status = 500


class NotFoundError(ServiceError):
    code = "not_found"
    status = 404


class ConflictError(ServiceError):
    code = "conflict"
    status = 409


class InvalidRequestError(ServiceError):
    code = "invalid_request"
    status = 400


class DatabaseNotMigratedError(ServiceError):
    code = "database_not_migrated"
    status = 503


class DimensionMismatchError(ServiceError):
    code = "embedding_dimension_mismatch"
    status = 409


class OverloadedError(ServiceError):
    """More work queued than the service takes on (the reranker's batch queue is full): 429.

    `retry_after`: whole seconds the client should wait, sent as the `Retry-After` header."""

    code = "overloaded"
    status = 429

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
