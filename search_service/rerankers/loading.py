"""`load_reranker`: checkpoint -> family -> runtime -> device and dtype (resolved once, here) ->
a loaded `Reranker`, with a half-precision probe on CPU."""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import torch

from search_service.errors import ConfigurationError
from search_service.rerankers.base import Reranker
from search_service.rerankers.checkpoint import resolve_checkpoint
from search_service.rerankers.registry import choose_family, family_class, split_family_suffix
from search_service.rerankers.runtimes.registry import runtime_named

log = logging.getLogger(__name__)


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
    GPU, float32 on CPU). A half dtype on CPU is checked once here by scoring one short pair
    (`check_half_precision`): a `ConfigurationError` when the model cannot run in it there.
    `family` overrides detection: a known family name or a dotted path to a `Reranker` subclass;
    a `#family=<name>` suffix on `name_or_path` does the same. Otherwise the family comes from
    config.json, then from the id or directory name for causal LMs (`registry.choose_family`);
    the rule that chose it is logged.
    Hub loading honours HF_HUB_OFFLINE (no network, cache only). The remaining options go to the
    family's `load` (encoder: max_length, batch_size, query_max_length, trust_remote_code,
    attn_implementation). Raises `ModelLoadError` when the model cannot be loaded.

    `runtime`: torch (default), or onnx / onnx-int8 (encoder family only, CPU): the forward pass in
    ONNX Runtime, exported once into `onnx_cache_dir` (see `runtimes/onnx.py`). Another family with
    an onnx runtime is a `ConfigurationError`.
    """
    source, suffix_family = split_family_suffix(os.fspath(name_or_path))
    if family and suffix_family and family != suffix_family:
        raise ConfigurationError(
            f"reranker {source!r}: #family={suffix_family} contradicts family={family}"
        )
    checkpoint = resolve_checkpoint(
        source, cache_dir=cache_dir, revision=revision, local_files_only=local_files_only
    )
    chosen_family, rule = choose_family(
        checkpoint.config, checkpoint.name_or_path, family or suffix_family
    )
    log.info("reranker %s: family %s, chosen by %s", checkpoint.name_or_path, chosen_family, rule)
    cls = family_class(chosen_family)
    chosen = runtime_named(runtime, cache_dir=onnx_cache_dir)
    chosen.check_family(cls, checkpoint.name_or_path)
    device_name, torch_dtype = chosen.place(cls, device, dtype)
    reranker = chosen.build(cls, checkpoint, device=device_name, dtype=torch_dtype, **options)
    check_half_precision(reranker)
    return reranker


HALF_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
PROBE_PAIR = ("what is a panda?", "The giant panda is a bear species endemic to China.")


def cpu_runs_natively(dtype: torch.dtype) -> bool:
    """Whether this CPU has instructions for `dtype` (AVX512-BF16/AMX, AVX512-FP16) that oneDNN
    uses; without them half-precision matmuls are converted to float32 and back, block by block."""
    check = {
        torch.bfloat16: "_is_mkldnn_bf16_supported",
        torch.float16: "_is_mkldnn_fp16_supported",
    }.get(dtype)
    probe = getattr(torch.ops.mkldnn, check, None) if check else None
    return True if probe is None else bool(probe())


def check_half_precision(reranker: Reranker) -> None:
    """On CPU, a float16/bfloat16 model must score one short pair to a finite value.

    CPU kernels for half types are patchy (an op may be missing for Half) and float16's range is
    small (activations past 65504 become inf, then NaN): either way the dtype cannot serve, and
    a `ConfigurationError` that names the dtype, the device and the fix is raised at load time
    rather than a wrong score at request time. GPUs run half precision natively: not probed.
    """
    name = HALF_DTYPES.get(reranker.dtype)
    if name is None or reranker.device != "cpu":
        return
    try:
        scores = reranker.score_pairs([PROBE_PAIR])
    except (RuntimeError, NotImplementedError) as error:
        problem = f"its forward pass fails ({type(error).__name__}: {error})"
        elsewhere = f", or run {name} on a GPU"
    else:
        if all(math.isfinite(score) for score in scores):
            if not cpu_runs_natively(reranker.dtype):
                log.warning(
                    "reranker %r: this CPU (%s) has no %s instructions, so %s is emulated and "
                    "slower than float32 (about 5x on a 2-core AVX2 VM, docs/benchmarks.md); "
                    "RAG_RERANKER_DTYPE=float32 or RAG_RERANKER_RUNTIME=onnx-int8 is faster here",
                    reranker.name,
                    torch.backends.cpu.get_cpu_capability(),
                    name,
                    name,
                )
            return
        problem = f"a short test pair scores {scores[0]} (its activations overflow {name})"
        elsewhere = ""
    others = ("float32",) if name == "bfloat16" else ("float32", "bfloat16")
    raise ConfigurationError(
        f"reranker {reranker.name!r} cannot run in {name} on cpu: {problem}. Use "
        f"{' or '.join(others)} instead (e.g. RAG_RERANKER_DTYPE=float32, or dtype='float32' "
        f"in load_reranker){elsewhere}"
    )
