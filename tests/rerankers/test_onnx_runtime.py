"""RAG_RERANKER_RUNTIME=onnx|onnx-int8: the encoder family's forward in ONNX Runtime, exported once.

The tiny XLM-R reranker is exported into a per-session cache; float32 ONNX must score as torch
does, int8 must run and report its drift with the benchmark's own function.
"""

from __future__ import annotations

import copy
import math

import pytest

from benchmarks.drift import kendall_tau, score_drift
from search_service.errors import ConfigurationError
from search_service.rerankers import load_reranker
from search_service.rerankers.runtimes import onnx as onnx_runtime
from search_service.rerankers.runtimes.onnx import OnnxEncoderReranker
from search_service.settings import Settings

QUERY = "what is panda?"
# Lengths from a few tokens to past max_length, so batches pad rows of very different lengths.
PASSAGES = [
    "hi",
    "The giant panda is a bear species endemic to China.",
    "大熊猫主要吃竹子,也吃少量的肉。" * 3,
    "Paris is the capital of France.",
    "Bears eat bamboo, fish, honey and berries in the forests and mountains. " * 12,
    "",
    "Reranking scores every candidate passage against the query. " * 4,
    "numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14",
]


def test_float32_onnx_scores_as_torch(onnx_reranker, shared_reranker, parity_pairs):
    pairs = parity_pairs + [(QUERY, passage) for passage in PASSAGES]
    assert len(pairs) >= 15
    expected = shared_reranker.score_pairs(pairs, batch_size=4)
    for batch_size in (1, 4, 32):
        assert onnx_reranker.score_pairs(pairs, batch_size=batch_size) == pytest.approx(
            expected, abs=1e-3
        )
    order = [index for index, _ in onnx_reranker.rank(QUERY, PASSAGES)]
    assert order == [index for index, _ in shared_reranker.rank(QUERY, PASSAGES)]
    assert onnx_reranker.model is None  # no torch weights held
    assert onnx_reranker.max_supported_length == shared_reranker.max_supported_length


def test_int8_runs_and_its_drift_is_measured(int8_reranker, shared_reranker, parity_pairs):
    pairs = parity_pairs + [(QUERY, passage) for passage in PASSAGES]
    reference = shared_reranker.score_pairs(pairs, batch_size=4)
    scores = int8_reranker.score_pairs(pairs, batch_size=4)
    drift = score_drift([reference], [scores])
    assert all(math.isfinite(score) for score in scores)
    # Random weights of a 32-wide model are int8's worst case; real checkpoints drift far less
    # (the benchmark reports it). Still, the ranking must mostly survive.
    assert drift.max_abs_diff < 0.5 and drift.tau_mean > 0.6, drift
    assert scores != reference  # it really is another model
    assert (int8_reranker.model_path.parent / "meta.json").is_file()


def test_the_export_is_cached_and_reused(tiny_reranker_dir, onnx_cache, onnx_reranker, monkeypatch):
    entry = onnx_reranker.model_path.parent
    built = (entry / "meta.json").stat().st_mtime_ns

    def no_export(*_args, **_kwargs):
        raise AssertionError("exported again despite a cache entry")

    monkeypatch.setattr(onnx_runtime, "export", no_export)
    monkeypatch.setattr(onnx_runtime, "load_transformers_model", no_export)  # no torch weights
    again = load_reranker(tiny_reranker_dir, runtime="onnx", onnx_cache_dir=onnx_cache)
    assert again.model_path == onnx_reranker.model_path
    assert (entry / "meta.json").stat().st_mtime_ns == built
    assert not list(onnx_cache.glob(".building-*"))
    assert again.score(QUERY, PASSAGES) == onnx_reranker.score(QUERY, PASSAGES)


def test_a_changed_checkpoint_gets_a_new_entry(tiny_reranker_dir, tmp_path):
    from search_service.rerankers.checkpoint import resolve_checkpoint

    checkpoint = resolve_checkpoint(tiny_reranker_dir)
    keys = {onnx_runtime.cache_key(checkpoint, runtime) for runtime in ("onnx", "onnx-int8")}
    assert len(keys) == 2
    copied = tmp_path / "copy"
    copied.mkdir()
    for item in tiny_reranker_dir.iterdir():
        (copied / item.name).write_bytes(item.read_bytes())
    assert onnx_runtime.cache_key(resolve_checkpoint(copied), "onnx") not in keys


def test_a_deep_copy_opens_its_own_session_and_a_scheduled_copy_shares_it(onnx_reranker):
    twin = copy.deepcopy(onnx_reranker)
    assert twin._session is not onnx_reranker._session
    assert twin.score(QUERY, PASSAGES) == onnx_reranker.score(QUERY, PASSAGES)
    scheduled = onnx_reranker.with_scheduler(None)  # what RAG_BATCHING=on wraps
    assert scheduled._session is onnx_reranker._session
    assert scheduled.score(QUERY, PASSAGES) == onnx_reranker.score(QUERY, PASSAGES)


def test_the_dynamo_exporter_is_the_fallback(
    tiny_reranker_dir, tmp_path, monkeypatch, shared_reranker
):
    import torch

    export = torch.onnx.export

    def without_torchscript(*args, dynamo=True, **kwargs):
        if not dynamo:
            raise RuntimeError("the TorchScript exporter is gone")
        return export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", without_torchscript)
    reranker = load_reranker(tiny_reranker_dir, runtime="onnx", onnx_cache_dir=tmp_path)
    assert '"exporter": "dynamo"' in (reranker.model_path.parent / "meta.json").read_text()
    expected = shared_reranker.score(QUERY, PASSAGES, batch_size=4)
    assert reranker.score(QUERY, PASSAGES, batch_size=4) == pytest.approx(expected, abs=1e-3)


# -- settings, errors, services and the API ---------------------------------------------------------


def test_runtime_and_dtype_settings():
    settings = Settings.from_env(
        {"RAG_RERANKER_RUNTIME": " ONNX-int8 ", "RAG_ONNX_CACHE_DIR": "/tmp/onnx-cache"}
    )
    assert settings.reranker_runtime == "onnx-int8"
    assert str(settings.onnx_cache_dir) == "/tmp/onnx-cache"
    assert Settings().reranker_runtime == "torch" and Settings().reranker_dtype == "auto"
    assert Settings.from_env({"RAG_RERANKER_DTYPE": "BFloat16"}).reranker_dtype == "bfloat16"
    with pytest.raises(ConfigurationError, match="RAG_RERANKER_RUNTIME must be torch, onnx"):
        Settings.from_env({"RAG_RERANKER_RUNTIME": "tensorrt"})
    with pytest.raises(ConfigurationError, match="RAG_RERANKER_DTYPE must be"):
        Settings.from_env({"RAG_RERANKER_DTYPE": "int4"})
    with pytest.raises(ConfigurationError, match="float32 checkpoint"):
        Settings.from_env({"RAG_RERANKER_RUNTIME": "onnx", "RAG_RERANKER_DTYPE": "bfloat16"})


def test_bad_runtimes_are_refused(tiny_reranker_dir, tmp_path):
    with pytest.raises(ConfigurationError, match="invalid reranker runtime 'tensorrt'"):
        load_reranker(tiny_reranker_dir, runtime="tensorrt")
    with pytest.raises(
        ConfigurationError, match="the llm family; the onnx runtime runs the encoder"
    ):
        load_reranker(tiny_reranker_dir, family="llm", runtime="onnx", onnx_cache_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="takes a float32 checkpoint"):
        load_reranker(tiny_reranker_dir, runtime="onnx", dtype="bfloat16", onnx_cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was exported


def test_bfloat16_on_cpu_ranks_as_float32(tiny_reranker_dir, shared_reranker, parity_pairs):
    from search_service.services import load_rerankers

    settings = Settings.from_env(
        {"RAG_RERANKER_MODEL": str(tiny_reranker_dir), "RAG_RERANKER_DTYPE": "bfloat16"},
        device="cpu",
    )
    bf16 = load_rerankers(settings).pick(None)
    import torch

    assert bf16.dtype == torch.bfloat16 and next(bf16.model.parameters()).dtype == torch.bfloat16
    drift = score_drift(
        [shared_reranker.score_pairs(parity_pairs)], [bf16.score_pairs(parity_pairs)]
    )
    assert drift.max_abs_diff < 0.1 and drift.tau_mean > 0.8, drift


def test_onnx_through_settings_services_and_the_api(
    tmp_path,
    tiny_reranker_dir,
    onnx_cache,
    onnx_reranker,
    shared_reranker,
    minilm_path,
    minilm_embedder,
):
    from search_service.app import create_app
    from search_service.services import build_services
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    settings = Settings.from_env(
        {
            "RAG_RERANKER_MODEL": str(tiny_reranker_dir),
            "RAG_RERANKER_RUNTIME": "onnx",
            "RAG_ONNX_CACHE_DIR": str(onnx_cache),
            "RAG_DEVICE": "cpu",
            "RAG_AUTH": "off",
            "RAG_DATABASE_URL": url,
            "RAG_EMBEDDER_MODEL": minilm_path,
            "RAG_DATA_DIR": str(tmp_path / "data"),
        }
    )
    services = build_services(settings, embedder=minilm_embedder)
    try:
        loaded = services.rerankers.pick(None)
        assert isinstance(loaded, OnnxEncoderReranker)
        assert loaded.model_path == onnx_reranker.model_path  # the session's cache entry
        app = create_app(services=services)
        app.config["TESTING"] = True
        body = (
            app.test_client()
            .post("/v1/rerank", json={"query": QUERY, "documents": PASSAGES, "raw_scores": True})
            .get_json()
        )
    finally:
        services.close()
    expected = shared_reranker.rank(QUERY, PASSAGES)
    assert [result["index"] for result in body["results"]] == [index for index, _ in expected]
    got = [result["relevance_score"] for result in body["results"]]
    assert got == pytest.approx([score for _, score in expected], abs=1e-3)


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))  # tau-b, as scipy
    drift = score_drift([[0.0, 1.0], [2.0, 3.0]], [[0.5, 1.0], [3.0, 2.0]])
    assert (drift.max_abs_diff, drift.tau_mean, drift.tau_min) == (1.0, 0.0, -1.0)
