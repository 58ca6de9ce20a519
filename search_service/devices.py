"""Device names: `auto`, `cpu`, `cuda`, `cuda:N`, `mps`."""

from __future__ import annotations

from search_service.errors import ConfigurationError


def resolve_device(name: str | None) -> str:
    """`auto` becomes the best device present; an explicit device must exist."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigurationError(f"device {name!r} was asked for but CUDA is not available")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigurationError(
                f"device {name!r} was asked for but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif name == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError("device 'mps' was asked for but MPS is not available")
    elif name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigurationError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return name
