"""Embeddings from an engine over HTTP (`RAG_EMBEDDER_URL`): workers without a GPU embed through a
shared service (TEI, vLLM, Infinity, OpenAI-compatible servers, another search-service).

- `openai`: `POST {url}/embeddings {input, model?, encoding_format: "float"}` -> `{data:
  [{index, embedding}]}`. The URL is the OpenAI base URL, as OpenAI's clients take it:
  `http://vllm:8000/v1`, `http://search:8000/v1`, `http://infinity:7997` (Infinity serves
  `/embeddings` at its root). At most 2048 inputs per request (OpenAI's and Infinity's limit).
- `tei`: `POST {url}/embed {inputs, normalize: true, truncate: true}` -> `[[...], ...]`; at most
  32 inputs per request (TEI's default `--max-client-batch-size`).

Vectors are L2-normalized here (the `Embedder` contract). The checkpoint named by
`RAG_EMBEDDER_MODEL` still matters: its tokenizer (tokenizer files only, no weights) cuts chunks
to the model's `max_seq_length`, and collections record it, so a remote and a local embedder of
the same checkpoint fill the same collections. The engine applies the model's query/passage
prompts, if any: none are sent from here. Query embeddings are cached as the local embedder does.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np

from search_service.embedding.base import Kind
from search_service.embedding.query_cache import QueryEmbeddingCache
from search_service.errors import ConfigurationError, EmbedderUnavailableError, ModelLoadError
from search_service.remote.client import RemoteClient, RemoteRejected, RemoteUnavailable
from search_service.remote.config import RemoteConfig
from search_service.remote.protocols import batches

log = logging.getLogger(__name__)

PATHS = {"openai": "/embeddings", "tei": "/embed"}
BATCH_LIMITS = {"openai": 2048, "tei": 32}


class RemoteEmbedder:
    def __init__(self, config: RemoteConfig, model_id: str, tokenizer, max_seq_length: int, *,
                 query_cache_size: int = 1024, client: RemoteClient | None = None):
        self.config = config
        self.model_id = model_id
        self.tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.num_special_tokens = int(tokenizer.num_special_tokens_to_add(pair=False))
        self.device = "remote"
        self.client = client or RemoteClient(config)
        self.batch_size = config.batch_size or BATCH_LIMITS[config.protocol]
        self.query_cache = QueryEmbeddingCache(query_cache_size)
        self._dimension: int | None = None
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        """The engine's vector size, asked once (one short text) and remembered."""
        if self._dimension is None:
            vector = self._encode(["dimension probe"])
            with self._lock:
                self._dimension = int(vector.shape[1])
        return self._dimension

    def embed(self, texts: list[str], kind: Kind = "passage", *, show_progress: bool = False) -> np.ndarray:
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if kind == "query":
            return self.query_cache.embed(self.model_id, list(texts), self._encode)
        return self._encode(list(texts), show_progress)

    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        chunks = batches(texts, self.batch_size)
        if show_progress and len(chunks) > 1:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="embedding (remote)", unit="batch")
        rows = []
        for _offset, chunk in chunks:
            rows.extend(self._call(list(chunk)))
        vectors = np.asarray(rows, dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.where(norms == 0, 1.0, norms), dtype=np.float32)

    def _call(self, texts: list[str]) -> list[list[float]]:
        config = self.config
        if config.protocol == "tei":
            body: dict = {"inputs": texts, "normalize": True, "truncate": True}
        else:
            body = {"input": texts, "encoding_format": "float"}
            if config.model is not None:
                body["model"] = config.model
        what = f"the remote embedder ({config.protocol} engine)"
        try:
            answer = self.client.post(config.path or PATHS[config.protocol], body)
        except RemoteUnavailable as error:
            retry = error.retry_after if error.retry_after is not None else 1
            raise EmbedderUnavailableError(
                f"{what} is unavailable ({error.reason}); retry later", detail=str(error),
                retry_after=max(1, round(retry)),
            ) from None
        except RemoteRejected as error:
            raise EmbedderUnavailableError(
                f"{what} refused the request (HTTP {error.status}): {error.detail}",
                detail=f"{config.where}: {error}", code="embedder_remote_error", status=502,
            ) from None
        vectors = _read(answer, len(texts), config.protocol)
        if vectors is None:
            raise EmbedderUnavailableError(
                f"{what} answered in a shape the {config.protocol} protocol does not have",
                detail=f"{config.where}: {str(answer)[:300]}", code="embedder_remote_error", status=502,
            )
        return vectors

    def probe(self, setting: str) -> None:
        """Ask for the dimension at start-up: a refusal is a `ConfigurationError`; an engine that
        is down only logs a warning (the first embedding asks again)."""
        try:
            self.dimension  # noqa: B018
        except EmbedderUnavailableError as error:
            if error.status == 502:
                raise ConfigurationError(f"{setting}: {error.message} ({error.detail})") from None
            log.warning("%s: %s (%s); starting anyway", setting, error.message, error.detail)

    def close(self) -> None:
        self.client.close()


def _read(answer, count: int, protocol: str) -> list[list[float]] | None:
    if protocol == "tei":
        rows = answer if isinstance(answer, list) else None
    else:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            return None
        ordered = sorted(data, key=lambda item: item.get("index", 0))
        rows = [item.get("embedding") for item in ordered]
    if rows is None or len(rows) != count or not all(isinstance(row, list) and row for row in rows):
        return None
    if len({len(row) for row in rows}) != 1:
        return None
    return rows


def max_seq_length_of(model_id: str, tokenizer) -> int:
    """The checkpoint's sentence-transformers max_seq_length, else the tokenizer's limit (<= 8192)."""
    config = None
    local = Path(model_id) / "sentence_bert_config.json"
    try:
        if local.is_file():
            config = json.loads(local.read_text())
        else:
            from huggingface_hub import hf_hub_download

            config = json.loads(Path(hf_hub_download(model_id, "sentence_bert_config.json")).read_text())
    except Exception:  # noqa: BLE001 - no sentence-transformers config: the tokenizer's limit
        config = None
    if isinstance(config, dict) and isinstance(config.get("max_seq_length"), int):
        return config["max_seq_length"]
    limit = int(getattr(tokenizer, "model_max_length", 512) or 512)
    return limit if limit <= 8192 else 512


def load_remote_embedder(config: RemoteConfig, model_id: str, *, query_cache_size: int = 1024,
                         probe: bool = True) -> RemoteEmbedder:
    """The tokenizer of `model_id` (files only) and a client of the engine."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
    except Exception as exc:
        raise ModelLoadError(
            f"RAG_EMBEDDER_MODEL: the tokenizer of {model_id!r} cannot be loaded ({type(exc).__name__}: "
            f"{exc}); with RAG_EMBEDDER_URL the checkpoint's tokenizer files are still needed here"
        ) from exc
    embedder = RemoteEmbedder(config, model_id, tokenizer, max_seq_length_of(model_id, tokenizer),
                              query_cache_size=query_cache_size)
    if probe:
        try:
            embedder.probe("RAG_EMBEDDER_URL")
        except BaseException:
            embedder.close()
            raise
    log.info("embedder %s through %s", model_id, config.where)
    return embedder
