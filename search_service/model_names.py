"""The names of loaded models, as clients see and send them.

- Display names: every loaded model is shown by its hub id, or by the name `RAG_RERANKERS` gives
  it; a model loaded from a local directory is shown by a name made from that directory (a Hugging
  Face cache snapshot `.../models--org--name/snapshots/<rev>` as `org/name`, any other directory
  by its own name, or its parent's when it is called `model`, `checkpoint`...). No response ever
  carries a filesystem path.
- Aliases: the names common clients send by default (Cohere's and Jina's rerank models, OpenAI's
  embedding models) point at the default reranker and at the embedder, so those clients work
  with no configuration. `RAG_MODEL_ALIASES` adds or overrides aliases; `none` drops the built-ins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from search_service.errors import ConfigurationError, NotFoundError

# The rerank models Cohere publishes (cohere SDK 5.21.1 / 7.3.1 docs and API reference) and the
# ones Jina's clients (LangChain, LlamaIndex) send by default: all mean "the default reranker".
BUILTIN_RERANK_ALIASES = (
    "rerank-v3.5",
    "rerank-english-v3.0",
    "rerank-multilingual-v3.0",
    "rerank-english-v2.0",
    "rerank-multilingual-v2.0",
    "rerank-v4.0-pro",
    "rerank-v4.0-fast",
    "rerank-v5.0-pro",
    "jina-reranker-v1-base-en",
    "jina-reranker-v2-base-multilingual",
)
# OpenAI's embedding models: the embedder.
BUILTIN_EMBEDDING_ALIASES = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")

GENERIC_DIRECTORIES = frozenset(
    {"model", "models", "checkpoint", "checkpoints", "weights", "snapshot", "snapshots", "final",
     "latest", "main", "hf", "export", "onnx", "current"}
)
HF_CACHE_SNAPSHOT = re.compile(r"(?:^|/)models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@lru_cache(maxsize=256)
def display_name(source: str) -> str:
    """The name a response shows for a model loaded from `source` (a hub id or a local directory)."""
    source = str(source)
    if HUB_ID.match(source) and not Path(source).exists():
        return source
    text = source.replace("\\", "/").rstrip("/")
    cached = HF_CACHE_SNAPSHOT.search(text)
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    parts = [part for part in Path(text).expanduser().parts if part not in ("/", ".", "..")]
    if not parts:
        return "model"
    name = parts[-1]
    if name.lower() in GENERIC_DIRECTORIES and len(parts) > 1:
        name = parts[-2]
    return name


def embedder_name(embedder) -> str:
    return display_name(getattr(embedder, "model_id", "embedder"))


@dataclass(frozen=True)
class ModelNames:
    """The embedder's display name and the aliases that resolve to it; the rerank aliases (which
    `RerankerSet.pick` resolves) are kept here too, for listings."""

    embedder: str
    embedder_source: str
    embedding_aliases: dict[str, str] = field(default_factory=dict)
    rerank_aliases: dict[str, str] = field(default_factory=dict)

    def resolve_embedder(self, name: str | None) -> str:
        """The embedder's display name for a requested `model`; 404 `model_not_found` otherwise."""
        if name is None or name in (self.embedder, self.embedder_source) or name in self.embedding_aliases:
            return self.embedder
        raise NotFoundError(
            f"model {name!r} is not loaded; this server embeds with {self.embedder!r}"
            + describe_aliases(self.embedding_aliases),
            code="model_not_found",
        )

    def aliases_of(self, name: str, kind: str) -> list[str]:
        table = self.embedding_aliases if kind == "embedding" else self.rerank_aliases
        return sorted(alias for alias, target in table.items() if target == name)


def describe_aliases(aliases: dict[str, str]) -> str:
    return f"; aliases: {', '.join(sorted(aliases))}" if aliases else ""


def build_names(settings, embedder, reranker_names: list[str], default_reranker: str | None) -> ModelNames:
    """The aliases in force: the built-ins (unless `RAG_MODEL_ALIASES=none`) for the models loaded,
    then the configured ones, each checked against the loaded models (a configuration error names
    the alias and the loaded names)."""
    shown = embedder_name(embedder)
    loaded = set(reranker_names) | {shown}
    embedding: dict[str, str] = {}
    rerank: dict[str, str] = {}
    if settings.builtin_model_aliases:
        embedding.update((alias, shown) for alias in BUILTIN_EMBEDDING_ALIASES if alias not in loaded)
        if default_reranker is not None:
            rerank.update(
                (alias, default_reranker) for alias in BUILTIN_RERANK_ALIASES if alias not in loaded
            )
    for alias, target in settings.model_aliases:
        if alias in loaded:
            raise ConfigurationError(
                f"RAG_MODEL_ALIASES: {alias!r} is the name of a loaded model; an alias cannot hide it"
            )
        if target not in loaded:
            raise ConfigurationError(
                f"RAG_MODEL_ALIASES: {alias}={target}: no loaded model is called {target!r}; "
                f"loaded: {', '.join(sorted(loaded))}"
            )
        embedding.pop(alias, None)
        rerank.pop(alias, None)
        if target == shown:
            embedding[alias] = target
        if target in reranker_names:
            rerank[alias] = target
    return ModelNames(shown, str(getattr(embedder, "model_id", shown)), embedding, rerank)
