"""Rerankers: score (query, passage) pairs with a cross-encoder loaded from a checkpoint.

    reranker = load_reranker("BAAI/bge-reranker-v2-m3", device="auto")
    reranker.score("what is panda?", ["hi", "The giant panda is a bear species..."])
    reranker.rank("what is panda?", passages, top_n=5)

The family (how inputs are built and scores read) is detected from the checkpoint's config.json, or
named with `family=`; see `registry.py` for the known families.
"""

from __future__ import annotations

import os
from typing import Any

from search_service.devices import resolve_device, resolve_dtype
from search_service.errors import ConfigurationError
from search_service.rerankers.base import Reranker, sigmoid
from search_service.rerankers.checkpoint import Checkpoint, resolve_checkpoint
from search_service.rerankers.registry import detect_family, family_class, known_families

__all__ = [
    "Checkpoint",
    "Reranker",
    "detect_family",
    "known_families",
    "load_reranker",
    "resolve_device",
    "resolve_dtype",
    "sigmoid",
]


def load_reranker(
    name_or_path: str | os.PathLike[str],
    device: str | None = None,
    dtype: Any = None,
    family: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
    runtime: str | None = None,
    onnx_cache_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Reranker:
    """Load a reranker from a local directory or a Hugging Face hub id.

    `device`: auto|cpu|cuda|cuda:N|mps; `dtype`: auto|float32|float16|bfloat16 (auto: float16 on a
    GPU, float32 on CPU). `family` overrides detection: a known family name or a dotted path to a
    `Reranker` subclass. Hub loading honours HF_HUB_OFFLINE (no network, cache only). The remaining
    options go to the family's `load` (encoder: max_length, batch_size, query_max_length,
    trust_remote_code, attn_implementation). Raises `ModelLoadError` when the model cannot be
    loaded.

    `runtime`: torch (default), or onnx / onnx-int8 (encoder family only, CPU): the forward pass in
    ONNX Runtime, exported once into `onnx_cache_dir` (see `onnx_runtime.py`). Another family with
    an onnx runtime is a `ConfigurationError`.
    """
    checkpoint = resolve_checkpoint(
        name_or_path, cache_dir=cache_dir, revision=revision, local_files_only=local_files_only
    )
    family_name = family or detect_family(checkpoint.config, checkpoint.name_or_path)
    cls = family_class(family_name)
    if runtime is not None and runtime.strip().lower() != "torch":
        from search_service.rerankers.encoder import EncoderReranker
        from search_service.rerankers.onnx_runtime import OnnxEncoderReranker, check_runtime

        runtime = check_runtime(runtime)
        if cls is not EncoderReranker:
            raise ConfigurationError(
                f"reranker {checkpoint.name_or_path!r} is of the {family_name} family; the "
                f"{runtime} runtime runs the encoder family only (cross-encoders such as "
                "bge-reranker-v2-m3): set RAG_RERANKER_RUNTIME=torch for it"
            )
        return OnnxEncoderReranker.load(
            checkpoint, runtime=runtime, device=device, dtype=dtype, cache_dir=onnx_cache_dir,
            **options,
        )
    return cls.load(checkpoint, device=device, dtype=dtype, **options)
