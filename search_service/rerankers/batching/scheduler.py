"""Dynamic batching: one worker thread per reranker scores the pairs of every in-flight request.

Request threads tokenize their own pairs (`Reranker.tokenize`, in parallel), hand the features to
`BatchScheduler.score` and wait. The worker gathers what is queued into *rounds* and each round
into length-sorted batches, so a batch mixes pairs from several requests:

1. it waits for the first pair, then until a full batch is queued (`max_batch_size` pairs or
   `token_budget` tokens) or the oldest pair has waited `max_delay` (a lone small request pays at
   most that delay; a request of a batch or more pays none);
2. a round is the oldest pairs, in arrival order, that share the oldest pair's `batch_key` (per-call
   options the forward reads: layerwise layers, lightweight compression), at most
   `ROUND_BATCHES` full batches of them; pairs that arrive meanwhile wait for the next round, so
   every pair is scored within two rounds whatever arrives after it;
3. the round's pairs are sorted longest first and cut into batches of at most `max_batch_size` rows
   with `rows x longest row <= token_budget` (a single longer pair runs alone), each launched by
   `Reranker.launch` (collate, forward under the forward lock, OOM back-off);
4. its scores are read back (`Reranker.read_back`) and go to their requests; a request returns
   when its last pair is scored;
5. on a GPU, step 4 waits until the next batch is launched (from this round, or from the next one
   where one is ready), so the device runs it while the worker hands out scores and collates.

A batch that raises fails every request with a pair in it, and only those (their other pairs are
dropped). Back-pressure: a request that would take the queue (pairs submitted, not yet scored)
above `queue_max` is refused with `OverloadedError` (429 `overloaded`, `Retry-After` from the recent
pairs/s); a request into an empty queue is always taken. `close()` fails what is still queued
(503 `shutting_down`), lets the running batch finish and joins the thread; after it, `score`
scores directly in the caller's thread.

Padding: every family masks padded positions (encoder right padding, decoder families left or
right with positions that do not depend on it), so a pair's score does not depend on its
batch-mates beyond float rounding (tests/rerankers/test_scheduler.py compares to 1e-5).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from search_service.errors import OverloadedError, ServiceError
from search_service.rerankers.batching.budget import Launched, batch_rows

log = logging.getLogger(__name__)

ROUND_BATCHES = 4  # a round holds at most this many full batches
CPU_MAX_BATCH = 32
GPU_MAX_BATCH = 128


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What an observer hears about each batch the worker ran."""

    model: str
    rows: int
    padded_tokens: int  # rows x longest row
    tokens: int  # the rows' own tokens (padded_tokens / tokens: the padding overhead)
    requests: int  # distinct requests with a pair in the batch
    seconds: float
    error: BaseException | None = None


class _Request:
    __slots__ = ("done", "error", "remaining", "scores")

    def __init__(self, size: int):
        self.scores: list[Any] = [None] * size
        self.remaining = size
        self.error: BaseException | None = None
        self.done = threading.Event()

    def fail(self, error: BaseException) -> None:
        if self.error is None and not self.done.is_set():
            self.error = error
            self.done.set()


@dataclass(slots=True)
class _InFlight:
    """A batch whose forward ran (on a GPU: is queued) and whose scores are not yet read back."""

    batch: list[_Pair]
    launched: Launched | None
    started: float
    error: BaseException | None = None


@dataclass(slots=True)
class _Pair:
    request: _Request
    index: int
    feature: Any
    key: Hashable
    length: int
    arrived: float


class BatchScheduler:
    def __init__(
        self,
        reranker: Any,
        *,
        max_delay_ms: float = 5.0,
        token_budget: int | None = None,
        max_batch_size: int | None = None,
        queue_max: int = 2048,
        name: str | None = None,
        pipeline: bool = True,
    ):
        gpu = not str(reranker.device).startswith("cpu")
        self.reranker = reranker
        self.name = name or reranker.name
        self.max_delay = max(0.0, max_delay_ms) / 1000
        self.token_budget = token_budget or reranker.token_budget
        self.max_batch_size = max_batch_size or (GPU_MAX_BATCH if gpu else CPU_MAX_BATCH)
        self.queue_max = queue_max
        # Step 5 (module doc): only where results are read back later, i.e. on a GPU.
        self.pipeline = pipeline and reranker.defers_results()
        self.observers: list[Callable[[BatchInfo], None]] = []
        self.rejected = 0
        self._cond = threading.Condition()
        self._pending: deque[_Pair] = deque()
        self._pending_tokens = 0
        self._queued = 0  # pairs submitted and not yet scored (pending or in the running round)
        self._rate = 0.0  # recent pairs per second, for Retry-After
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        """Pairs submitted and not yet scored."""
        return self._queued

    # -- request threads -------------------------------------------------------------------------

    def score(self, features: Sequence[Any]) -> list[Any]:
        """One score per feature, in order, from batches shared with concurrent callers."""
        if not features:
            return []
        request = _Request(len(features))
        with self._cond:
            if self._closed:
                request = None
            else:
                self._admit(len(features))
                now = time.monotonic()
                key = self.reranker.batch_key
                for index, feature in enumerate(features):
                    self._pending.append(
                        _Pair(request, index, feature, key(feature), len(feature), now)
                    )
                    self._pending_tokens += len(feature)
                self._queued += len(features)
                self._start()
                self._cond.notify()
        if request is None:  # closed: score here, as without a scheduler
            return self.reranker.score_batches(features, self.reranker.batch_size)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.scores

    def _admit(self, size: int) -> None:
        if not self._queued or self._queued + size <= self.queue_max:
            return
        self.rejected += 1
        retry = math.ceil(self._queued / self._rate) if self._rate > 0 else 1
        raise OverloadedError(
            f"reranker {self.name!r} is overloaded: {self._queued} pairs queued, at most "
            f"{self.queue_max} (RAG_RERANK_QUEUE_MAX); retry later",
            retry_after=min(60, max(1, retry)),
        )

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"rerank-batches-{self.name}", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float | None = 30.0) -> None:
        """Fail what is queued, let the running batch finish, join the worker."""
        with self._cond:
            self._closed = True
            dropped, self._pending = self._pending, deque()
            self._queued -= len(dropped)
            self._pending_tokens = 0
            self._cond.notify_all()
            thread = self._thread
        self._fail_all(dropped)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        batches: deque[list[_Pair]] = deque()  # the rest of the current round
        in_flight: _InFlight | None = None
        try:
            while True:
                if not batches:
                    with self._cond:
                        round_ = self._next_round(block=in_flight is None)
                    if round_ is None and in_flight is None:  # closed, nothing in flight
                        return
                    if not round_:  # closed, nothing due yet, or every pair's request failed
                        if in_flight is not None:  # its requests need not wait any longer
                            self._finish(in_flight)
                            in_flight = None
                        continue
                    batches = self._cut(round_)
                launched = self._launch(batches.popleft())
                if in_flight is not None:
                    self._finish(in_flight)
                    in_flight = None
                if launched is not None and self.pipeline:
                    in_flight = launched
                elif launched is not None:
                    self._finish(launched)
        except BaseException as error:  # never leave a caller waiting
            log.exception("%s: the batch worker stopped", self.name)
            with self._cond:
                self._closed = True
                dropped, self._pending = self._pending, deque()
            unfinished = [pair for batch in batches for pair in batch]
            if in_flight is not None:
                unfinished.extend(in_flight.batch)
            self._fail_all([*unfinished, *dropped], error)
            raise

    def _next_round(self, *, block: bool) -> list[_Pair] | None:
        """Called with the lock held: wait for work (see the module doc), then take a round.
        None once closed; without `block`, an empty round unless one is ready now."""
        if not block and not self._ready():
            return [] if not self._closed else None
        while not self._pending and not self._closed:
            self._cond.wait()
        deadline = self._pending[0].arrived + self.max_delay if self._pending else 0.0
        while not self._closed and not self._full():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        if self._closed:
            return None
        key = self._pending[0].key
        limit = ROUND_BATCHES * self.max_batch_size
        taken: list[_Pair] = []
        kept: deque[_Pair] = deque()
        for pair in self._pending:
            if pair.request.error is not None:  # its request already failed: drop the pair
                self._queued -= 1
            elif pair.key == key and len(taken) < limit:
                taken.append(pair)
            else:
                kept.append(pair)
        self._pending = kept
        self._pending_tokens = sum(pair.length for pair in kept)
        return taken

    def _ready(self) -> bool:
        if self._closed or not self._pending:
            return False
        return self._full() or time.monotonic() >= self._pending[0].arrived + self.max_delay

    def _full(self) -> bool:
        return (
            len(self._pending) >= self.max_batch_size or self._pending_tokens >= self.token_budget
        )

    def _cut(self, round_: list[_Pair]) -> deque[list[_Pair]]:
        """The round's batches: longest first, each within the row and token limits."""
        ordered = sorted(round_, key=lambda pair: -pair.length)  # stable: arrival order on ties
        batches: deque[list[_Pair]] = deque()
        start = 0
        while start < len(ordered):
            rows = batch_rows(ordered[start].length, self.max_batch_size, self.token_budget)
            batches.append(ordered[start : start + rows])
            start += rows
        return batches

    def _launch(self, batch: list[_Pair]) -> _InFlight | None:
        """Run the batch's forward (on a GPU only queue it); None when no pair is left to score."""
        if self._closed:
            self._fail_all(batch)
            with self._cond:
                self._queued -= len(batch)
            return None
        live = [pair for pair in batch if pair.request.error is None]
        if len(live) < len(batch):
            with self._cond:
                self._queued -= len(batch) - len(live)
        if not live:
            return None
        started = time.perf_counter()
        try:
            launched = self.reranker.launch([pair.feature for pair in live], len(live))
        except Exception as caught:  # noqa: BLE001 - it belongs to the batch's requests
            return _InFlight(live, None, started, caught)
        return _InFlight(live, launched, started)

    def _finish(self, flight: _InFlight) -> None:
        """Read the batch's scores back (waiting for the device) and hand them to its requests."""
        batch, error, scores = flight.batch, flight.error, None
        if error is None:
            try:
                scores = self.reranker.read_back(flight.launched)
            except Exception as caught:  # noqa: BLE001 - it belongs to the batch's requests
                error = caught
        seconds = time.perf_counter() - flight.started
        with self._cond:
            self._queued -= len(batch)
            if error is None and seconds > 0:
                rate = len(batch) / seconds
                self._rate = rate if not self._rate else 0.8 * self._rate + 0.2 * rate
        requests = {id(pair.request): pair.request for pair in batch}
        if error is not None:
            for request in requests.values():
                request.fail(error)
        else:
            for pair, score in zip(batch, scores, strict=True):
                request = pair.request
                request.scores[pair.index] = score
                request.remaining -= 1
                if request.remaining == 0 and request.error is None:
                    request.done.set()
        info = BatchInfo(
            self.name,
            len(batch),
            len(batch) * batch[0].length,
            sum(pair.length for pair in batch),
            len(requests),
            seconds,
            error,
        )
        for observer in list(self.observers):
            try:
                observer(info)
            except Exception:  # metrics must not break scoring
                log.exception("%s: batch observer failed", self.name)

    def _fail_all(self, pairs, error: BaseException | None = None) -> None:
        shutdown = error or ServiceError(
            f"reranker {self.name!r} is shutting down", code="shutting_down", status=503
        )
        for pair in pairs:
            pair.request.fail(shutdown)
