"""Rerankers: score (query, passage) pairs with a cross-encoder loaded from a checkpoint.

    reranker = load_reranker("BAAI/bge-reranker-v2-m3", device="auto")
    reranker.score("what is panda?", ["hi", "The giant panda is a bear species..."])
    reranker.rank("what is panda?", passages, top_n=5)

The family (how inputs are built and scores read) is detected from the checkpoint's config.json, or
named with `family=`; the runtime (torch, onnx, onnx-int8) with `runtime=`.

    base.py          the `Reranker` contract and the logic every family shares
    registry.py      the families by name, detected from config.json
    loading.py       `load_reranker`: family, runtime, device and dtype, once
    checkpoint.py    local folder or hub id -> config and files
    token_cache.py   passage token ids kept between requests
    families/        one module per family, with the model code it needs
    runtimes/        what runs a family's forward: torch, ONNX Runtime, packed CPU batches;
                     or `remote`: an engine over HTTP (TEI, vLLM, Infinity, Cohere)
    batching/        the scheduler that batches concurrent requests
"""

from __future__ import annotations

from search_service.devices import resolve_device, resolve_dtype
from search_service.rerankers.base import Reranker, sigmoid
from search_service.rerankers.checkpoint import Checkpoint
from search_service.rerankers.loading import check_half_precision, load_reranker
from search_service.rerankers.registry import detect_family, known_families
from search_service.rerankers.runtimes.registry import known_runtimes

__all__ = [
    "Checkpoint",
    "Reranker",
    "check_half_precision",
    "detect_family",
    "known_families",
    "known_runtimes",
    "load_reranker",
    "resolve_device",
    "resolve_dtype",
    "sigmoid",
]
