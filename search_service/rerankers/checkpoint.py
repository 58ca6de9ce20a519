"""Where a checkpoint lives: a local directory or a Hugging Face hub id, and its config.json."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from search_service.errors import ModelLoadError

log = logging.getLogger(__name__)

TRUE_VALUES = {"1", "on", "yes", "true"}
Loaded = TypeVar("Loaded")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub parsed it at import, or as the environment says now."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or now.strip().lower() in TRUE_VALUES


@dataclass(frozen=True)
class Checkpoint:
    """What `from_pretrained` needs: the id or path plus the hub options, and the parsed config."""

    name_or_path: str
    config: dict[str, Any]
    hub_options: dict[str, Any] = field(default_factory=dict)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", ".\\"))
        or os.path.isabs(name)
        or name.count("/") > 1
    )


def _read_config(path: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read config.json of reranker {name!r}: {error}") from error


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
) -> Checkpoint:
    """Find the checkpoint and read its config.json (the only file fetched from the hub here)."""
    name = os.fspath(name_or_path)
    local = Path(name).expanduser()
    if local.is_dir():
        config_path = local / "config.json"
        if not config_path.is_file():
            raise ModelLoadError(f"reranker directory {name!r} has no config.json")
        return Checkpoint(str(local), _read_config(config_path, name))
    if _looks_like_path(name):
        raise ModelLoadError(f"reranker directory {name!r} does not exist")

    offline = hub_offline() if local_files_only is None else local_files_only
    hub_options: dict[str, Any] = {"local_files_only": offline}
    if cache_dir is not None:
        hub_options["cache_dir"] = os.fspath(cache_dir)
    if revision is not None:
        hub_options["revision"] = revision
    try:
        from huggingface_hub import hf_hub_download

        config_path = Path(hf_hub_download(name, "config.json", **hub_options))
    except Exception as error:  # the hub raises many types: bad id, missing repo, offline, network
        mode = " (offline: HF_HUB_OFFLINE is set and it is not in the cache)" if offline else ""
        raise ModelLoadError(f"cannot load reranker {name!r}{mode}: {error}") from error
    log.info("reranker %s: config from %s", name, config_path)
    return Checkpoint(name, _read_config(config_path, name), hub_options)


def load_transformers_model(
    auto_class: Any,
    checkpoint: Checkpoint,
    device: str,
    dtype: Any,
    *,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """(tokenizer, model) through transformers' Auto classes, on `device` in `dtype`, in eval mode.

    Any loading failure (OSError, ValueError, hub errors...) becomes one `ModelLoadError`.
    """
    from transformers import AutoTokenizer

    source = checkpoint.name_or_path
    options = dict(checkpoint.hub_options, trust_remote_code=trust_remote_code)
    model_options = dict(options, dtype=dtype)
    if attn_implementation is not None:
        model_options["attn_implementation"] = attn_implementation
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = auto_class.from_pretrained(source, **model_options)
        model.to(device)
    except Exception as error:
        raise ModelLoadError(f"cannot load reranker {source!r}: {error}") from error
    model.eval()
    return tokenizer, model


def load_with_fast_tokenizer(
    checkpoint: Checkpoint, load_model: Callable[[], Loaded]
) -> tuple[Any, Loaded]:
    """(tokenizer, `load_model()`) for our own model code: the tokenizer is loaded from
    tokenizer.json as it is (as transformers 4.46 does), not rebuilt from its vocabulary.

    Any loading failure (OSError, ValueError, hub errors...) becomes one `ModelLoadError`.
    """
    from transformers import PreTrainedTokenizerFast

    source = checkpoint.name_or_path
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(source, **checkpoint.hub_options)
        return tokenizer, load_model()
    except Exception as error:
        raise ModelLoadError(f"cannot load reranker {source!r}: {error}") from error
