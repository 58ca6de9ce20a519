"""Pooled JSON-over-HTTP calls to one engine, with a deadline, retries and a circuit breaker.

One `RemoteClient` per configured engine, shared by every request thread: an `httpx.Client`
keeps connections alive and pooled. A call has one deadline (`timeout_s`) covering every attempt
and back-off: a connection error, a 5xx or a 429 is retried after `backoff_s`, doubling, while
the deadline allows; an attempt that times out is not retried (the deadline is spent). A call
that ends without an answer counts as one failure for the breaker (`breaker.py`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import httpx

from search_service.remote.breaker import STATE_VALUES, BreakerOpen, CircuitBreaker
from search_service.remote.config import RemoteConfig

log = logging.getLogger(__name__)


class RemoteUnavailable(Exception):
    """The engine gave no usable answer (down, past the deadline, 5xx, breaker open)."""

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason  # connect | timeout | server_error | breaker_open | bad_response
        self.retry_after = retry_after


class RemoteRejected(Exception):
    """The engine answered 4xx: it is up but refuses this request (a wrong model name...)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def error_detail(response: httpx.Response) -> str:
    """The message an engine put in its error body (TEI, vLLM, Infinity, Cohere, search-service)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        for key in ("message", "error", "detail"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


class RemoteClient:
    RETRYABLE = frozenset({429, 500, 502, 503, 504})

    def __init__(self, config: RemoteConfig, *, breaker: CircuitBreaker | None = None, pool_size: int = 32):
        self.config = config
        self.breaker = breaker or CircuitBreaker(config.breaker_failures, config.breaker_reset_s)
        headers = {"User-Agent": "search-service"}
        if config.api_key_env:
            token = os.environ.get(config.api_key_env)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            else:
                log.warning("%s: %s is not set; calling without a bearer token", config.where, config.api_key_env)
        self.http = httpx.Client(
            base_url=config.base_url,
            headers=headers,
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            timeout=config.timeout_s,
        )
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}  # outcome -> count: ok, rejected, and each failure reason
        self.retries = 0

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.calls[outcome] = self.calls.get(outcome, 0) + 1

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            calls = dict(self.calls)
        return {"calls": calls, "retries": self.retries, "breaker_state": STATE_VALUES[self.breaker.state],
                "breaker_opened": self.breaker.opened}

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer; `RemoteUnavailable` or `RemoteRejected` otherwise."""
        try:
            self.breaker.before_call()
        except BreakerOpen as open_:
            self._count("breaker_open")
            raise RemoteUnavailable(
                f"{self.config.where}: {open_}", reason="breaker_open", retry_after=open_.retry_after
            ) from None
        try:
            answer = self._attempts(path, body)
        except RemoteUnavailable as error:
            self.breaker.record_failure()
            self._count(error.reason)
            raise
        except RemoteRejected:
            self.breaker.record_success()  # the engine is up; the request was wrong
            self._count("rejected")
            raise
        self.breaker.record_success()
        self._count("ok")
        return answer

    def _attempts(self, path: str, body: dict[str, Any]) -> Any:
        config = self.config
        deadline = time.monotonic() + config.timeout_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteUnavailable(f"{config.where}: no answer within {config.timeout_s} s", reason="timeout")
            try:
                response = self.http.post(path, json=body, timeout=remaining)
            except httpx.TimeoutException:
                raise RemoteUnavailable(
                    f"{config.where}: no answer within {config.timeout_s} s", reason="timeout"
                ) from None
            except httpx.TransportError as error:
                failure = RemoteUnavailable(f"{config.where}: {type(error).__name__}: {error}", reason="connect")
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise RemoteUnavailable(
                            f"{config.where}: answered {response.status_code} with a body that is not JSON",
                            reason="bad_response",
                        ) from None
                if response.status_code not in self.RETRYABLE:
                    raise RemoteRejected(response.status_code, error_detail(response))
                failure = RemoteUnavailable(
                    f"{config.where}: HTTP {response.status_code}: {error_detail(response)}", reason="server_error"
                )
            pause = config.backoff_s * 2**attempt
            if attempt >= config.retries or time.monotonic() + pause >= deadline:
                raise failure
            attempt += 1
            with self._lock:
                self.retries += 1
            log.info("%s; retry %d in %.2f s", failure, attempt, pause)
            time.sleep(pause)

    def close(self) -> None:
        self.http.close()
