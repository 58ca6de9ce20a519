"""Device and dtype names shared by every model: `auto|cpu|cuda|cuda:N|mps`, `auto|float32|...`."""

from __future__ import annotations

import torch

from search_service.errors import ConfigurationError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device | None) -> str:
    """`auto|cpu|cuda|cuda:N|mps` -> a concrete device string such as "cpu" or "cuda:0"."""
    name = str(device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigurationError("device 'mps' was requested but MPS is not available")
        return "mps"
    if name == "cuda" or name.startswith("cuda:"):
        index_text = name.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ConfigurationError(f"invalid device {device!r}: expected cuda or cuda:N")
        if not torch.cuda.is_available():
            raise ConfigurationError(f"device {device!r} was requested but CUDA is not available")
        index = int(index_text)
        if index >= torch.cuda.device_count():
            raise ConfigurationError(
                f"device {device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA devices exist"
            )
        return f"cuda:{index}"
    raise ConfigurationError(f"invalid device {device!r}: expected auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """`auto|float32|float16|bfloat16` -> a torch dtype; auto: float16 on a GPU, float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ConfigurationError(f"unsupported dtype {dtype}; use one of {', '.join(DTYPES)}")
        return dtype
    name = str(dtype or "auto").strip().lower()
    if name == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    if name not in DTYPES:
        raise ConfigurationError(f"invalid dtype {dtype!r}: expected auto, {', '.join(DTYPES)}")
    return DTYPES[name]
