"""Dynamic batching (`rerankers/batching/scheduler.py`): concurrent calls share batches, scores unchanged.

Every test runs the real tiny models; a slow forward is made by holding the reranker's own forward
lock, never by mocking the scheduler.
"""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from search_service.errors import OverloadedError, ServiceError
from search_service.rerankers import load_reranker
from search_service.rerankers.batching.scheduler import BatchScheduler
from tests.rerankers.conftest import batch_shape

PASSAGES = [
    "The giant panda is a bear species endemic to China.",
    "大熊猫主要吃竹子,也吃少量的肉。",
    "Paris is the capital of France.",
    "",
    "Reranking scores every candidate passage against the query. " * 6,
    "The giant panda is a bear species endemic to China.",  # a duplicate: scored once, copied
]
QUERIES = [
    "what is panda?",
    "熊猫是什么?",
    "What is the capital of France?",
    "how do rerankers work?",
]


# Per-call options that change the forward: requests with different ones must not share a batch.
OPTIONS = {
    "encoder": [{}],
    "llm": [{}, {"prompt": "Does B answer A? Yes or No."}],
    "layerwise": [{}, {"cutoff_layers": 2}],
    "lightweight": [{}, {"cutoff_layers": 2}, {"compress_ratio": 2, "compress_layers": [1]}],
}


# Padding is masked, so batch-mates change a score only by float rounding; the llm family pads on
# the left, which shifts RoPE positions (tests/rerankers/test_llm_family.py allows 1e-4 for it).
TOLERANCE = {"encoder": 1e-5, "llm": 1e-4, "layerwise": 1e-5, "lightweight": 1e-5}


# The session's tiny checkpoint of each family (tests/rerankers/conftest.py).
CHECKPOINTS = {
    "encoder": "tiny_reranker_dir",
    "llm": "llm_dir",
    "layerwise": "layerwise_local_dir",
    "lightweight": "lightweight_local_dir",
}


@pytest.fixture(scope="module", params=list(OPTIONS))
def family_reranker(request):
    path = request.getfixturevalue(CHECKPOINTS[request.param])
    reranker = load_reranker(path, device="cpu", max_length=64)
    assert reranker.family == request.param
    return reranker


def _scheduled(reranker, **options):
    scheduler = BatchScheduler(reranker, **options)
    batches = []
    scheduler.observers.append(batches.append)
    return scheduler, reranker.with_scheduler(scheduler), batches


def _run_together(calls, workers=None):
    """Run the calls on threads released at once; returns results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - returned for the test to inspect
            return error

    with ThreadPoolExecutor(max_workers=workers or len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_requests_get_the_direct_scores(family_reranker):
    reranker = family_reranker
    jobs = [(query, options) for query in QUERIES for options in OPTIONS[reranker.family]] * 2
    expected = [reranker.score(query, PASSAGES, **options) for query, options in jobs]
    scheduler, batched, batches = _scheduled(reranker, max_delay_ms=100)
    try:
        results = _run_together(
            [lambda q=query, o=options: batched.score(q, PASSAGES, **o) for query, options in jobs]
        )
    finally:
        scheduler.close()
    for job, scores, wanted in zip(jobs, results, expected, strict=True):
        assert not isinstance(scores, Exception), (job, scores)
        assert scores == pytest.approx(wanted, abs=TOLERANCE[reranker.family]), job
    # Requests really shared forward passes (5 distinct pairs each: duplicates are scored once).
    assert sum(batch.rows for batch in batches) == 5 * len(jobs)
    assert len(batches) < len(jobs)
    assert max(batch.requests for batch in batches) > 1
    assert scheduler.queued == 0 and not scheduler._thread.is_alive()


def test_duplicates_and_empty_calls(shared_reranker):
    scores = shared_reranker.score("what is panda?", PASSAGES)
    assert scores[0] == scores[5]
    assert shared_reranker.score("what is panda?", []) == []
    scheduler, batched, batches = _scheduled(shared_reranker)
    try:
        assert batched.score("what is panda?", []) == []
        assert batched.score("what is panda?", PASSAGES) == pytest.approx(scores, abs=1e-5)
    finally:
        scheduler.close()
    assert [batch.rows for batch in batches] == [5]


def test_max_delay_is_honoured(shared_reranker):
    scheduler, batched, batches = _scheduled(shared_reranker, max_delay_ms=300)
    try:
        started = time.perf_counter()
        batched.score("what is panda?", PASSAGES[:2])  # alone and small: waits for batch-mates
        assert time.perf_counter() - started >= 0.3
        # Two requests 30 ms apart, within the delay: one forward for both.
        results = []
        first = threading.Thread(target=lambda: results.append(batched.score("q1", PASSAGES[:2])))
        first.start()
        time.sleep(0.03)
        results.append(batched.score("q2", PASSAGES[2:4]))
        first.join()
        assert [(batch.rows, batch.requests) for batch in batches[1:]] == [(4, 2)]
    finally:
        scheduler.close()
    # A full batch does not wait for anything.
    scheduler, batched, batches = _scheduled(shared_reranker, max_delay_ms=5000, max_batch_size=4)
    try:
        started = time.perf_counter()
        batched.score("what is panda?", PASSAGES[:4])
        assert time.perf_counter() - started < 2.5
    finally:
        scheduler.close()


def test_token_budget_bounds_every_batch(tiny_reranker):
    shapes = []
    original = tiny_reranker.forward

    def forward(batch):
        shapes.append(batch_shape(batch))
        return original(batch)

    tiny_reranker.forward = forward
    passages = [("bamboo " * (3 * i + 1)).strip() for i in range(20)] + ["panda " * 200]
    expected = tiny_reranker.score("what is panda?", passages)
    shapes.clear()
    budget = 120
    scheduler, batched, batches = _scheduled(tiny_reranker, token_budget=budget, max_delay_ms=20)
    try:
        results = _run_together(
            [lambda q=query: batched.score(q, passages) for query in ("what is panda?", "q2")]
        )
    finally:
        scheduler.close()
    assert results[0] == pytest.approx(expected, abs=1e-5)
    assert len(shapes) > 2
    for rows, width in shapes:
        assert rows * width <= budget or rows == 1, (rows, width)
    assert any(rows == 1 and width > budget for rows, width in shapes)  # the long pair, alone
    assert all(b.padded_tokens <= budget or b.rows == 1 for b in batches)


def test_an_error_reaches_only_the_requests_of_its_batch(tiny_reranker):
    original = tiny_reranker.forward
    poison = tiny_reranker._backend.encode("poison", add_special_tokens=False).ids

    def forward(batch):
        rows = batch["input_ids"].tolist()
        if any(_contains(row, poison) for row in rows):
            raise RuntimeError("device-side assert (injected)")
        return original(batch)

    tiny_reranker.forward = forward
    # One pair per batch: only the poisoned request fails, the others are scored.
    scheduler, batched, _ = _scheduled(tiny_reranker, max_batch_size=1, max_delay_ms=20)
    try:
        results = _run_together(
            [
                lambda: batched.score("what is panda?", PASSAGES[:3]),
                lambda: batched.score("what is panda?", ["poison", *PASSAGES[:3]]),
                lambda: batched.score("熊猫是什么?", PASSAGES[:3]),
            ]
        )
        assert isinstance(results[1], RuntimeError)
        assert results[0] == pytest.approx(
            tiny_reranker.score("what is panda?", PASSAGES[:3]), abs=1e-5
        )
        assert results[2] == pytest.approx(
            tiny_reranker.score("熊猫是什么?", PASSAGES[:3]), abs=1e-5
        )
    finally:
        scheduler.close()
    assert scheduler.queued == 0
    # Two requests in one batch with the poison: both fail; the next request is scored.
    scheduler, batched, batches = _scheduled(tiny_reranker, max_delay_ms=300)
    try:
        results = _run_together(
            [
                lambda: batched.score("q", ["poison", "a"]),
                lambda: batched.score("q", ["b", "c"]),
            ]
        )
        assert [type(result) for result in results] == [RuntimeError, RuntimeError]
        assert batches[0].requests == 2 and batches[0].error is results[0]
        assert batched.score("q", ["b"]) == pytest.approx(tiny_reranker.score("q", ["b"]), abs=1e-5)
    finally:
        scheduler.close()


def test_a_full_queue_refuses_new_requests(shared_reranker):
    scheduler, batched, _ = _scheduled(shared_reranker, queue_max=8, max_delay_ms=0)
    lock = shared_reranker._forward_lock
    lock.acquire()  # the worker blocks in its first forward: a slow model
    try:
        first = ThreadPoolExecutor(max_workers=1).submit(batched.score, "q", PASSAGES[:5])
        _wait_for(lambda: scheduler.queued == 5)
        with pytest.raises(OverloadedError) as refused:
            batched.score("q", PASSAGES[:4])  # 5 + 4 > 8
        assert refused.value.status == 429 and refused.value.code == "overloaded"
        assert refused.value.retry_after >= 1 and scheduler.rejected == 1
        second = ThreadPoolExecutor(max_workers=1).submit(batched.score, "q", PASSAGES[:3])
        _wait_for(lambda: scheduler.queued == 8)  # 5 + 3 fits
    finally:
        lock.release()
    assert len(first.result(timeout=30)) == 5 and len(second.result(timeout=30)) == 3
    scheduler.close()


def test_a_request_into_an_empty_queue_is_always_taken(shared_reranker):
    scheduler, batched, _ = _scheduled(shared_reranker, queue_max=2)
    try:
        assert len(batched.score("q", PASSAGES)) == len(PASSAGES)
    finally:
        scheduler.close()


def test_close_fails_the_queue_joins_the_worker_then_scores_directly(shared_reranker):
    scheduler, batched, _ = _scheduled(shared_reranker, max_delay_ms=0, max_batch_size=2)
    lock = shared_reranker._forward_lock
    pool = ThreadPoolExecutor(max_workers=3)
    lock.acquire()
    try:
        running = pool.submit(batched.score, "q", PASSAGES[:2])
        _wait_for(lambda: scheduler.queued == 2 and not scheduler._pending)
        queued = pool.submit(batched.score, "q", PASSAGES[2:4])
        _wait_for(lambda: len(scheduler._pending) == 2)
        closing = pool.submit(scheduler.close)
        with pytest.raises(ServiceError) as failed:
            queued.result(timeout=30)
        assert failed.value.status == 503 and failed.value.code == "shutting_down"
    finally:
        lock.release()
    assert len(running.result(timeout=30)) == 2  # the batch already running finishes
    closing.result(timeout=30)
    assert not scheduler._thread.is_alive()
    assert batched.score("q", PASSAGES[:2]) == pytest.approx(
        shared_reranker.score("q", PASSAGES[:2]), abs=1e-6
    )
    pool.shutdown()


def test_copies_share_the_model_but_not_the_scheduler(shared_reranker):
    scheduler = BatchScheduler(shared_reranker)
    batched = shared_reranker.with_scheduler(scheduler)
    assert batched.model is shared_reranker.model
    assert batched._forward_lock is shared_reranker._forward_lock
    assert shared_reranker._scheduler is None
    assert copy.deepcopy(batched)._scheduler is None
    assert BatchScheduler(shared_reranker).token_budget == shared_reranker.token_budget == 1024  # CPU defaults
    assert BatchScheduler(shared_reranker).max_batch_size == 32


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _contains(row: list[int], part: list[int]) -> bool:
    return any(row[i : i + len(part)] == part for i in range(len(row) - len(part) + 1))


def test_direct_batches_follow_the_token_budget(tiny_reranker):
    """Without the scheduler too: rows x longest row stays within the budget, scores unchanged."""
    passages = [("word " * n).strip() for n in (3, 40, 7, 90, 12, 60, 5, 25, 33, 2)]
    expected = tiny_reranker.score("query", passages, batch_size=1)
    reranker = copy.deepcopy(tiny_reranker)
    reranker.token_budget = 150
    shapes = []
    forward = reranker.forward

    def recording(batch):
        shapes.append(batch_shape(batch))
        return forward(batch)

    reranker.forward = recording
    scores = reranker.score("query", passages, batch_size=32)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(shapes) > 1
    assert all(rows * width <= 150 or rows == 1 for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == len(passages)


def test_default_token_budget_follows_device_and_dtype():
    from search_service.rerankers.batching.budget import default_token_budget

    assert default_token_budget("cpu", torch.float32) < default_token_budget("cpu", torch.bfloat16)
    assert default_token_budget("cuda:0", torch.float16) > default_token_budget("cpu", torch.bfloat16)


def _record_stages(reranker, deferred: bool, poison: list[int] | None = None) -> list[str]:
    """Log each forward ("forward") and read-back ("read") of `reranker`, as on a GPU when
    `deferred`; a batch holding `poison` fails at its read-back, as a device error surfaces."""
    events: list[str] = []
    forward, postprocess = reranker.forward, reranker.postprocess
    poisoned: set[int] = set()

    def recording_forward(batch):
        events.append("forward")
        output = forward(batch)
        if poison and any(_contains(row, poison) for row in batch["input_ids"].tolist()):
            poisoned.add(id(output))
        return output

    def recording_postprocess(logits):
        events.append("read")
        if id(logits) in poisoned:
            raise RuntimeError("device-side assert (injected, seen at read-back)")
        return postprocess(logits)

    reranker.forward, reranker.postprocess = recording_forward, recording_postprocess
    reranker.defers_results = lambda: deferred
    return events


@pytest.mark.parametrize(
    ("deferred", "pipeline"), [(False, True), (True, True), (True, False)], ids=["cpu", "gpu", "gpu-serial"]
)
def test_on_a_gpu_the_next_batch_is_launched_before_the_last_is_read_back(
    tiny_reranker, deferred, pipeline
):
    """Deferred (a GPU), the worker keeps one batch in flight: batch k+1's forward is queued before
    batch k is read back, so the device never waits for the worker. On a CPU, or with
    RAG_BATCH_PIPELINE=off, each batch is read back at once. Same scores either way."""
    passages = [("bamboo " * (4 * i + 1)).strip() for i in range(12)]
    expected = tiny_reranker.score("what is panda?", passages)
    events = _record_stages(tiny_reranker, deferred)
    scheduler, batched, batches = _scheduled(
        tiny_reranker, token_budget=100, max_delay_ms=20, pipeline=pipeline
    )
    try:
        assert batched.score("what is panda?", passages) == pytest.approx(expected, abs=1e-5)
    finally:
        scheduler.close()
    assert len(batches) >= 3
    assert events.count("forward") == events.count("read") == len(batches)
    if deferred and pipeline:
        assert events == ["forward"] + ["forward", "read"] * (len(batches) - 1) + ["read"]
    else:
        assert events == ["forward", "read"] * len(batches)
    assert scheduler.queued == 0


def test_an_error_at_read_back_fails_only_the_requests_of_its_batch(tiny_reranker):
    poison = tiny_reranker._backend.encode("poison", add_special_tokens=False).ids
    _record_stages(tiny_reranker, deferred=True, poison=poison)
    expected = {query: tiny_reranker.score(query, PASSAGES[:3]) for query in QUERIES[:2]}
    # One pair per batch, so the poisoned batch is in flight between two healthy ones.
    scheduler, batched, _ = _scheduled(tiny_reranker, max_batch_size=1, max_delay_ms=20)
    try:
        results = _run_together(
            [
                lambda: batched.score(QUERIES[0], PASSAGES[:3]),
                lambda: batched.score(QUERIES[0], ["poison", *PASSAGES[:3]]),
                lambda: batched.score(QUERIES[1], PASSAGES[:3]),
            ]
        )
        assert isinstance(results[1], RuntimeError) and "read-back" in str(results[1])
        assert results[0] == pytest.approx(expected[QUERIES[0]], abs=1e-5)
        assert results[2] == pytest.approx(expected[QUERIES[1]], abs=1e-5)
        # The worker lives on: the next request is scored.
        assert batched.score(QUERIES[1], PASSAGES[:1]) == pytest.approx(
            expected[QUERIES[1]][:1], abs=1e-5
        )
    finally:
        scheduler.close()
    assert scheduler.queued == 0


def test_close_on_a_gpu_lets_the_launched_batches_finish(tiny_reranker):
    """Closing while a batch is read back and the next one is already launched: both finish and
    reach their request; what is still queued fails with 503."""
    expected = tiny_reranker.score("q", PASSAGES[:2])
    events = _record_stages(tiny_reranker, deferred=True)
    reading, release = threading.Event(), threading.Event()
    read = tiny_reranker.postprocess

    def slow_read(logits):
        reading.set()
        assert release.wait(30)
        return read(logits)

    tiny_reranker.postprocess = slow_read
    scheduler, batched, _ = _scheduled(tiny_reranker, max_delay_ms=0, max_batch_size=1)
    pool = ThreadPoolExecutor(max_workers=3)
    try:
        running = pool.submit(batched.score, "q", PASSAGES[:2])
        assert reading.wait(10)
        assert events == ["forward", "forward"]  # batch 2 launched while batch 1 is read back
        queued = pool.submit(batched.score, "q", PASSAGES[2:4])
        _wait_for(lambda: len(scheduler._pending) == 2)
        closing = pool.submit(scheduler.close)
        with pytest.raises(ServiceError) as failed:
            queued.result(timeout=30)
        assert failed.value.status == 503
    finally:
        release.set()
    assert running.result(timeout=30) == pytest.approx(expected, abs=1e-5)
    closing.result(timeout=30)
    assert not scheduler._thread.is_alive() and scheduler.queued == 0
    pool.shutdown()


@pytest.mark.parametrize("deferred", [False, True], ids=["cpu", "gpu"])
def test_the_worker_survives_a_round_of_only_failed_requests(tiny_reranker, deferred):
    """A request fails in its first round; its pairs left for the next round are dropped, which
    leaves that round empty. The worker must go on and serve the next request."""
    poison = tiny_reranker._backend.encode("poison", add_special_tokens=False).ids
    _record_stages(tiny_reranker, deferred, poison=poison)
    expected = tiny_reranker.score("q", ["b"])
    # One pair per batch and four per round: the 10 pairs need three rounds.
    scheduler, batched, _ = _scheduled(tiny_reranker, max_batch_size=1, max_delay_ms=0)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        passages = ["poison " * 30, *(f"passage {i}" for i in range(9))]  # poison is the longest
        with pytest.raises(RuntimeError, match="injected"):
            batched.score("q", passages)
        later = pool.submit(batched.score, "q", ["b"])
        assert later.result(timeout=30) == pytest.approx(expected, abs=1e-5)
        _wait_for(lambda: scheduler.queued == 0)
    finally:
        scheduler.close()
        pool.shutdown(wait=False)
