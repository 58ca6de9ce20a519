"""OpenAI-compatible `POST /v1/embeddings` and `GET /v1/models` (the loaded embedder and rerankers).

Models are named by display name (`model_names.py`); `model` may also be an alias such as
OpenAI's `text-embedding-3-small`, and the response names the model actually used."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Literal

import numpy as np
from flask import Blueprint, current_app
from pydantic import Field, StringConstraints

from search_service.api import parse_body, services
from search_service.api.schemas import MAX_PASSAGE_CHARS, Strict
from search_service.errors import InvalidRequestError

bp = Blueprint("embeddings", __name__, url_prefix="/v1")

MAX_EMBEDDING_INPUTS = 100_000  # the hard ceiling; RAG_MAX_EMBEDDING_INPUTS is the configured cap
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSAGE_CHARS)]


class EmbeddingsRequest(Strict):
    """OpenAI's embeddings request. `input_type` (an extension) picks the query or passage prompt."""

    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    model: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["query", "passage"] = "passage"
    user: Annotated[str, StringConstraints(max_length=256)] | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def _device(model) -> str:
    return str(getattr(model, "device", "cpu"))


@bp.post("/embeddings")
def embeddings():
    body = parse_body(EmbeddingsRequest)
    svc = services()
    embedder = svc.embedder
    name = svc.names.resolve_embedder(body.model)  # its name, an alias (text-embedding-3-small...)
    texts = body.texts()
    if len(texts) > svc.settings.max_embedding_inputs:
        raise InvalidRequestError(
            f"input: must have at most {svc.settings.max_embedding_inputs} texts (got {len(texts)})"
        )
    started = time.perf_counter()
    vectors = embedder.embed(texts, kind=body.input_type)
    metrics = current_app.extensions.get("metrics")
    if metrics is not None:
        metrics.stages.labels("embed").observe(time.perf_counter() - started)
    tokens = sum(len(ids) for ids in embedder.tokenizer(texts, add_special_tokens=True, truncation=True,
                                                        max_length=embedder.max_seq_length)["input_ids"])
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)}
            for i, vector in enumerate(vectors)
        ],
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: np.ndarray, encoding_format: str):
    if encoding_format == "base64":  # little-endian float32, as OpenAI's clients decode it
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]


@bp.get("/models")
def models():
    """The loaded models, OpenAI's list shape plus type, family, device and dimension."""
    svc = services()
    embedder = svc.embedder
    names = svc.names
    data = [{
        "id": names.embedder,
        "object": "model",
        "owned_by": "search-service",
        "type": "embedding",
        "family": "sentence-transformers",
        "device": _device(embedder),
        "dimension": embedder.dimension,
        "max_seq_length": embedder.max_seq_length,
        "aliases": names.aliases_of(names.embedder, "embedding"),
    }]
    for name, reranker in svc.rerankers.rerankers.items():
        data.append({
            "id": name,
            "object": "model",
            "owned_by": "search-service",
            "type": "reranker",
            "family": reranker.family,
            "device": _device(reranker),
            "default": name == svc.rerankers.default,
            "max_length": getattr(reranker, "max_supported_length", None),
            "aliases": names.aliases_of(name, "reranker"),
        })
    return {"object": "list", "data": data}
