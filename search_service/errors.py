"""Domain errors. Each carries the HTTP status and the slug the API puts in its error body."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to its users."""

    code = "internal_error"
    status = 500
    # A 5xx's message is replaced by a generic one (it may hold paths, SQL, settings) unless the
    # error says its message is written for clients.
    public = False

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


class RerankerRemoteError(ServiceError):
    """A remote reranker (`rerankers/runtimes/remote.py`) gave no scores; a search with
    `rerank_fallback: "dense"` answers with the candidates' own order instead. `message` is for
    clients (no URL); `detail`, with the engine's host and answer, goes to the log."""

    public = True

    def __init__(self, message: str, *, detail: str = "", retry_after: int | None = None):
        super().__init__(message)
        self.detail = detail or message
        self.retry_after = retry_after


class RerankerUnavailableError(RerankerRemoteError):
    """The engine is down, past the deadline, failing (5xx) or its circuit breaker is open: 503."""

    code = "reranker_unavailable"
    status = 503


class RerankerRemoteRefusedError(RerankerRemoteError):
    """The engine answered, but refused the request (a wrong model name) or answered in a shape
    its protocol does not have: 502, a configuration problem rather than an outage."""

    code = "reranker_remote_error"
    status = 502


class EmbedderUnavailableError(ServiceError):
    """The remote embedding engine (RAG_EMBEDDER_URL) gave no vectors: down, past the deadline,
    5xx, breaker open (503), or it refused the request (`embedder_remote_error`, 502)."""

    code = "embedder_unavailable"
    status = 503
    public = True

    def __init__(self, message: str, *, detail: str = "", code: str | None = None,
                 status: int | None = None, retry_after: int | None = None):
        super().__init__(message, code=code, status=status)
        self.detail = detail or message
        self.retry_after = retry_after
