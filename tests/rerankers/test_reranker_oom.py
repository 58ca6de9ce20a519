"""Out-of-memory back-off: the batch halves, finished batches are kept, other errors propagate."""

from __future__ import annotations

import pytest
import torch

from tests.rerankers.conftest import batch_shape

PASSAGES = [f"passage {i}: " + "The giant panda eats bamboo. " * (i + 1) for i in range(10)]


def _patch_forward(monkeypatch, reranker, fail_on_calls: set[int], error: Exception) -> list[int]:
    """Make the forward raise `error` on the given call numbers; return the rows of each call."""
    original = reranker.forward
    rows: list[int] = []

    def forward(batch):
        rows.append(batch_shape(batch)[0])
        if len(rows) in fail_on_calls:
            raise error
        return original(batch)

    monkeypatch.setattr(reranker, "forward", forward)
    return rows


@pytest.mark.parametrize("oom_type", [torch.OutOfMemoryError, torch.cuda.OutOfMemoryError])
def test_oom_halves_the_batch_and_keeps_scores(monkeypatch, tiny_reranker, oom_type):
    expected = tiny_reranker.score("what is panda?", PASSAGES, batch_size=4)
    rows = _patch_forward(
        monkeypatch, tiny_reranker, {2}, oom_type("CUDA out of memory (injected)")
    )

    scores = tiny_reranker.score("what is panda?", PASSAGES, batch_size=4)

    assert scores == pytest.approx(expected, abs=1e-5)
    # 4 rows pass, the next 4 fail, then batches of 2 cover the 6 rows left: nothing is redone.
    assert rows == [4, 4, 2, 2, 2]


def test_oom_at_batch_size_one_propagates(monkeypatch, tiny_reranker):
    rows = _patch_forward(
        monkeypatch, tiny_reranker, {1, 2, 3, 4}, torch.OutOfMemoryError("injected")
    )

    with pytest.raises(torch.OutOfMemoryError):
        tiny_reranker.score("what is panda?", PASSAGES[:3], batch_size=4)
    assert rows == [3, 1]


def test_other_errors_propagate_without_retry(monkeypatch, tiny_reranker):
    rows = _patch_forward(monkeypatch, tiny_reranker, {2}, RuntimeError("device-side assert"))

    with pytest.raises(RuntimeError, match="device-side assert"):
        tiny_reranker.score("what is panda?", PASSAGES, batch_size=4)
    assert rows == [4, 4]


@pytest.mark.parametrize("deferred", [False, True])
def test_results_are_read_back_per_batch_or_once_per_call(monkeypatch, tiny_reranker, deferred):
    """On a CPU each batch is postprocessed as it finishes; on a GPU (deferred) every batch is
    queued first and read back at the end. Same scores either way, OOM back-off included."""
    expected = tiny_reranker.score("what is panda?", PASSAGES, batch_size=4)
    events: list[str] = []
    forward, postprocess = tiny_reranker.forward, tiny_reranker.postprocess

    def recording_forward(batch):
        events.append("forward")
        if events.count("forward") == 2:
            raise torch.OutOfMemoryError("injected")
        return forward(batch)

    def recording_postprocess(logits):
        events.append("read")
        return postprocess(logits)

    monkeypatch.setattr(tiny_reranker, "defers_results", lambda: deferred)
    monkeypatch.setattr(tiny_reranker, "forward", recording_forward)
    monkeypatch.setattr(tiny_reranker, "postprocess", recording_postprocess)

    scores = tiny_reranker.score("what is panda?", PASSAGES, batch_size=4)

    assert scores == pytest.approx(expected, abs=1e-5)
    if deferred:  # 4 rows, an OOM on the next 4, then 3 batches of 2; all read back at the end
        assert events == ["forward"] * 5 + ["read"] * 4
    else:
        assert events == ["forward", "read", "forward"] + ["forward", "read"] * 3
