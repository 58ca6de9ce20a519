"""Where a checkpoint lives: a local directory or a Hugging Face hub id, and its config.json; how
a family loads its tokenizer and model from it (`FamilyLoader.load`, which `Reranker` inherits)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

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


class FamilyLoader:
    """`load` for the reranker families (`Reranker` inherits it): the tokenizer and the model from
    `_load_model`, then the family's constructor on them (`_loaded`)."""

    family: ClassVar[str]
    options: ClassVar[tuple[str, ...]]  # the per-call options (see `Reranker.options`)
    # transformers' Auto class that the default `_load_model` builds the model with, by name:
    # imported when a reranker loads, not with the family's module. Families with their own model
    # code override `_load_model` instead.
    auto_model: ClassVar[str | None] = None
    # The keywords of `load` that go to `_load_model`.
    model_options: ClassVar[tuple[str, ...]] = ("trust_remote_code", "attn_implementation")
    # Constructor keywords `load` takes besides max_length, batch_size and the family's per-call
    # `options` (whose load-time defaults they set): the encoder's query_max_length.
    load_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls, checkpoint: Checkpoint, *, device: str, dtype: Any, **options: Any) -> Self:
        """The family's reranker on a resolved `Checkpoint` (see `load_reranker`).

        `options`: `model_options` go to `_load_model`; max_length, batch_size, the family's
        `options` and `load_options` to its constructor. Any other is a TypeError, raised before
        anything loads.
        """
        known = {*cls.model_options, "max_length", "batch_size", *cls.options, *cls.load_options}
        for name in options:
            if name not in known:
                raise TypeError(
                    f"{cls.__name__}.load() got an unexpected keyword argument {name!r}"
                )
        model_options = {name: options.pop(name) for name in cls.model_options if name in options}
        tokenizer, model = cls._load_model(checkpoint, device, dtype, **model_options)
        return cls._loaded(checkpoint, tokenizer, model, device, dtype, **options)

    @classmethod
    def _load_model(
        cls, checkpoint: Checkpoint, device: str, dtype: Any, **model_options: Any
    ) -> tuple[Any, Any]:
        """(tokenizer, model) through transformers' `auto_model` class (`load_transformers_model`:
        `model_options` are trust_remote_code and attn_implementation)."""
        if cls.auto_model is None:
            raise NotImplementedError(f"{cls.__name__} names no auto_model")
        import transformers

        auto_class = getattr(transformers, cls.auto_model)
        return load_transformers_model(auto_class, checkpoint, device, dtype, **model_options)

    @classmethod
    def _loaded(
        cls, checkpoint: Checkpoint, tokenizer: Any, model: Any, device: str, dtype: Any, **options
    ) -> Self:
        """The common tail of `load`: log, and build the reranker on the loaded model."""
        source = checkpoint.name_or_path
        logging.getLogger(cls.__module__).info(
            "loaded %s reranker %s on %s (%s)", cls.family, source, device, dtype
        )
        return cls(
            model=model, tokenizer=tokenizer, name=source, device=device, dtype=dtype, **options
        )
