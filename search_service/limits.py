"""Request limits from the settings, and per-key rate limits.

Body limits: the schemas in `api/schemas.py` hold the hard ceilings; `check_body` applies the
(lower or equal) configured caps after a body validated, with the same 400 shape.

Rate limits: a fixed window per key (per client address when auth is off): at most N requests
per window; the next one gets 429 with `Retry-After` (seconds until the window ends). The counts
live in memory (one process) or in Redis (`RAG_RATE_LIMIT_STORAGE=redis://...`, shared by every
process and host). Open endpoints (health, docs) are never limited.
"""

from __future__ import annotations

import math
import threading
import time

from flask import Flask, current_app, g, request
from werkzeug.exceptions import TooManyRequests

from search_service.errors import InvalidRequestError

EXEMPT = {"health.healthz", "health.readyz", "docs.openapi", "docs.docs", "playground.index", "static"}


def check_body(body) -> None:
    """The configured caps (RAG_MAX_*) on a validated request body."""
    settings = current_app.extensions["search_service"].settings
    checks = (
        ("query", settings.max_query_chars, "characters", len),
        ("top_k", settings.max_top_k, "", None),
        ("candidates", settings.max_candidates, "", None),
        ("documents", settings.max_rerank_documents, "documents", len) if type(body).__name__ == "RerankRequest" else None,
    )
    for check in checks:
        if check is None:
            continue
        field, cap, unit, measure = check
        value = getattr(body, field, None)
        if value is None or isinstance(value, bool):
            continue
        amount = measure(value) if measure else value
        if amount > cap:
            what = f"at most {cap} {unit}".rstrip() if unit else f"at most {cap}"
            raise InvalidRequestError(f"{field}: must have {what} (got {amount})" if unit else f"{field}: must be {what} (got {amount})")


class MemoryWindows:
    """Fixed-window counters in this process."""

    def __init__(self):
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, window: int) -> int:
        with self._lock:
            if len(self._counts) > 100_000:  # drop old windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
            start, count = self._counts.get(key, (window, 0))
            count = count + 1 if start == window else 1
            self._counts[key] = (window, count)
            return count


class RedisWindows:
    """Fixed-window counters in Redis: INCR + EXPIRE in one transaction, shared by all processes."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def hit(self, key: str, window: int, ttl: int = 3600) -> int:
        name = f"rag:ratelimit:{key}:{window}"
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, ttl)
        count, _ = pipe.execute()
        return int(count)


class RateLimiter:
    def __init__(self, limit: tuple[int, float], storage: str):
        self.count, self.seconds = limit
        self.storage = MemoryWindows() if storage == "memory" else RedisWindows(storage)

    def hit(self, identity: str, now: float | None = None) -> float | None:
        """None when allowed; else the seconds until the window resets (for Retry-After)."""
        now = time.time() if now is None else now
        window = int(now // self.seconds)
        if isinstance(self.storage, RedisWindows):
            count = self.storage.hit(identity, window, ttl=max(1, math.ceil(self.seconds)) + 1)
        else:
            count = self.storage.hit(identity, window)
        if count <= self.count:
            return None
        return (window + 1) * self.seconds - now


def identity() -> str:
    principal = g.get("principal")
    return f"key:{principal.prefix}" if principal is not None else f"addr:{request.remote_addr}"


def rate_limit() -> None:
    limiter: RateLimiter | None = current_app.extensions.get("rate_limiter")
    if limiter is None or request.endpoint is None or request.endpoint in EXEMPT or request.method == "OPTIONS":
        return
    retry = limiter.hit(identity())
    if retry is not None:
        seconds = max(1, math.ceil(retry))
        error = TooManyRequests(
            f"rate limit of {limiter.count} requests per {limiter.seconds:g} s exceeded; "
            f"retry in {seconds} s"
        )
        error.retry_after = seconds  # werkzeug puts it in the Retry-After header
        raise error


def init_app(app: Flask, settings) -> None:
    """Register after auth, so limits count per key."""
    if settings.rate_limit is not None:
        app.extensions["rate_limiter"] = RateLimiter(settings.rate_limit, settings.rate_limit_storage)
        app.before_request(rate_limit)
