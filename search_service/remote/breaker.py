"""A circuit breaker per engine: stop calling an engine that keeps failing, try again later.

closed: calls go through; `failures` failed calls in a row open it.
open: calls fail at once (no connection, no waiting for a deadline) for `reset_s` seconds.
half-open: after `reset_s`, one call goes through as a trial; its success closes the breaker,
its failure opens it for another `reset_s`. Calls made while the trial runs fail at once.

A call "fails" when the engine cannot answer (connection refused, deadline passed, 5xx): an
answer that refuses the request (4xx: a wrong model name) shows the engine is up and counts as a
success here. Thread-safe; `clock` is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # the `rag_remote_breaker_state` gauge


class BreakerOpen(Exception):
    """The breaker refuses the call; `retry_after`: seconds until the next trial."""

    def __init__(self, retry_after: float):
        super().__init__(f"circuit breaker open; next trial in {retry_after:.1f} s")
        self.retry_after = retry_after


class CircuitBreaker:
    def __init__(self, failures: int = 5, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures = max(1, int(failures))
        self.reset_s = float(reset_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_running = False
        self.opened = 0  # times it opened (a counter for /metrics)

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self.clock() - self._opened_at >= self.reset_s:
                return HALF_OPEN
            return self._state

    def before_call(self) -> None:
        """Raise `BreakerOpen` unless a call may go to the engine now."""
        with self._lock:
            if self._state == CLOSED:
                return
            waited = self.clock() - self._opened_at
            if self._state == OPEN and waited >= self.reset_s:
                self._state = HALF_OPEN
            if self._state == HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return
            raise BreakerOpen(max(0.0, self.reset_s - waited))

    def record_success(self) -> None:
        with self._lock:
            self._state = CLOSED
            self._consecutive = 0
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._state == HALF_OPEN or self._consecutive >= self.failures:
                if self._state != OPEN:
                    self.opened += 1
                self._state = OPEN
                self._opened_at = self.clock()
            self._trial_running = False
