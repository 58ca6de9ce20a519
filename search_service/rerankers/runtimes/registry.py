"""Reranker runtimes: what runs a family's forward pass, found through one dict like the families.

A runtime decides where a reranker may run (`place`: device and dtype, resolved once per load) and
builds it (`build`). `torch` runs every family as the family loads itself; `onnx` and `onnx-int8`
run the encoder family's forward in ONNX Runtime on CPU (`runtimes/onnx.py`); `remote` scores on
an engine over HTTP, chosen per RAG_RERANKERS entry (`runtimes/remote.py`). Adding a runtime
means a `Runtime` subclass in its own module and one entry below.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from search_service.devices import resolve_device, resolve_dtype
from search_service.errors import ConfigurationError
from search_service.rerankers.base import Reranker
from search_service.rerankers.checkpoint import Checkpoint


class Runtime:
    """Runs some families' forward passes. `families`: the family names it takes (None: all);
    `cache_dir`: where it keeps what it builds from a checkpoint (None: its default, if any)."""

    name: str = "base"
    families: frozenset[str] | None = None

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None):
        self.cache_dir = cache_dir

    def check_family(self, family: type[Reranker], source: str) -> None:
        if self.families is not None and family.family not in self.families:
            takes = ", ".join(sorted(self.families))
            raise ConfigurationError(
                f"reranker {source!r} is of the {family.family} family; the {self.name} runtime "
                f"runs the {takes} family only (cross-encoders such as bge-reranker-v2-m3): set "
                "RAG_RERANKER_RUNTIME=torch for it"
            )

    def place(self, family: type[Reranker], device: Any, dtype: Any) -> tuple[str, torch.dtype]:
        """The concrete device and dtype a reranker of `family` runs with here."""
        device_name = resolve_device(device)
        if dtype in (None, "auto"):
            dtype = family.default_dtype(device_name) or dtype
        return device_name, resolve_dtype(dtype, device_name)

    def build(
        self,
        family: type[Reranker],
        checkpoint: Checkpoint,
        *,
        device: str,
        dtype: torch.dtype,
        **options: Any,
    ) -> Reranker:
        raise NotImplementedError


class TorchRuntime(Runtime):
    """The family's own transformers model (packed batches for CPU encoders, `packed.py`)."""

    name = "torch"

    def build(self, family, checkpoint, *, device, dtype, **options):
        return family.load(checkpoint, device=device, dtype=dtype, **options)


# name -> a Runtime class, or "module:Class" imported when first asked for (onnxruntime is
# optional).
RUNTIMES: dict[str, type[Runtime] | str] = {
    "torch": TorchRuntime,
    "onnx": "search_service.rerankers.runtimes.onnx:OnnxRuntime",
    "onnx-int8": "search_service.rerankers.runtimes.onnx:OnnxInt8Runtime",
    "remote": "search_service.rerankers.runtimes.remote:RemoteRuntime",
}


def known_runtimes() -> list[str]:
    return list(RUNTIMES)


def runtime_named(
    name: str | None, cache_dir: str | os.PathLike[str] | None = None
) -> Runtime:
    """The runtime called `name` (None: torch); a `ConfigurationError` for any other name."""
    key = str(name or "torch").strip().lower()
    entry = RUNTIMES.get(key)
    if entry is None:
        raise ConfigurationError(
            f"invalid reranker runtime {name!r}: expected {', '.join(RUNTIMES)}"
        )
    if isinstance(entry, str):
        module_name, _, attribute = entry.partition(":")
        entry = RUNTIMES[key] = getattr(importlib.import_module(module_name), attribute)
    return entry(cache_dir)
