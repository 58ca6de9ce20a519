"""Shared wording for model loading, so every model setting fails the same clear way."""

from __future__ import annotations

import os
from pathlib import Path


def describe_load_failure(setting: str, model_id: str, exc: BaseException) -> str:
    if Path(model_id).exists():
        return f"{setting}={model_id!r} is a local path but could not be loaded as a model: {exc}"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set and it is not" if offline else "the hub is unreachable or it is not"
    return (
        f"{setting}={model_id!r} could not be loaded: {reason} in the local Hugging Face cache "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
        f"Download it on a connected machine (`hf download {model_id}`) and copy the cache, "
        f"or set {setting} to a local directory that holds the model."
    )
