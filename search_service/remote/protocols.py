"""The rerank protocols: the request each engine takes, its batch limit, and how its scores map
onto ours (`rerank_score` a logit, `score` its sigmoid). docs/scaling.md "Remote engines" has the
table; the recorded exchanges in tests/remote/data/ are copied from each engine's documentation.

- tei: `POST /rerank {query, texts, raw_scores: true, truncate: true}` -> `[{index, score}]`.
  With raw_scores the score is the classifier's logit: used as it is (nothing lost). At most
  32 texts per request (TEI's default `--max-client-batch-size`).
- vllm: `POST /v1/rerank {model, query, documents, top_n}` -> `{results: [{index,
  relevance_score}]}`, or with `path: "/score"`: `{model, text_1, text_2}` -> `{data: [{index,
  score}]}`. vLLM applies the model's activation (sigmoid) and returns probabilities, often in
  float16: the logit is recovered as log(p / (1 - p)), exact in order but coarse in value (a
  float16 probability keeps ~3 decimal digits; anything above ~0.9995 reads as 1, clamped to
  +36.7). When a vLLM version returns logits (a pooling parameter in `extra`), set
  `scores: "logits"`. vLLM documents no per-request limit: 1000 texts per request.
- infinity: `POST /rerank {model, query, documents, raw_scores: true, return_documents: false,
  top_n}` -> `{results: [{index, relevance_score}]}`; with raw_scores the logit. Its API takes at
  most 2048 documents per request.
- cohere: `POST /v1/rerank {model, query, documents, top_n}` -> `{results: [{index,
  relevance_score}]}`. Cohere's scores are normalized to [0, 1] by a calibration it does not
  publish: the logit is log(p / (1 - p)) of that, an order-preserving stand-in, not the model's
  logit. Another search-service takes `scores: "logits"` (it sends its `raw_scores: true`
  extension and reads the logit exactly); without it the sigmoid is inverted, exact to ~1e-12.
  At most 1000 documents per request (Cohere's documented maximum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from search_service.remote.config import RemoteConfig

# The largest logit a float64 probability can tell apart from 1 (1 - 2**-53 -> 36.7).
MAX_LOGIT = 36.7


class BadAnswer(Exception):
    """The engine answered 2xx with a body this protocol cannot read."""


def logit(probability: float) -> float:
    """The inverse of the sigmoid, clamped to +-MAX_LOGIT at 0 and 1."""
    if probability <= 0.0:
        return -MAX_LOGIT
    if probability >= 1.0:
        return MAX_LOGIT
    return max(-MAX_LOGIT, min(MAX_LOGIT, math.log(probability) - math.log1p(-probability)))


@dataclass(frozen=True)
class RerankProtocol:
    name: str
    path: str
    batch_limit: int
    default_scale: str  # what the engine returns by default: logits | probabilities

    def scale(self, config: RemoteConfig) -> str:
        return self.default_scale if config.scores == "auto" else config.scores

    def request(self, config: RemoteConfig, query: str, texts: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) for one batch."""
        path = config.path or self.path
        raw = self.scale(config) == "logits"
        if self.name == "tei":
            body: dict[str, Any] = {"query": query, "texts": list(texts), "raw_scores": raw, "truncate": True}
        elif self.name == "vllm" and path.rstrip("/").endswith("score"):
            body = {"text_1": query, "text_2": list(texts)}
        else:
            body = {"query": query, "documents": list(texts), "top_n": len(texts)}
            if self.name == "infinity":
                body.update(raw_scores=raw, return_documents=False)
            elif self.name == "cohere" and raw:
                body["raw_scores"] = True  # search-service's extension; Cohere's API has none
        if config.model is not None and self.name != "tei":
            body["model"] = config.model
        body.update(config.extra)
        return path, body

    def values(self, answer: Any, count: int) -> list[float]:
        """The engine's number for each text, in the texts' order."""
        if isinstance(answer, dict) and isinstance(answer.get("results"), list):
            items = answer["results"]
        elif isinstance(answer, dict) and isinstance(answer.get("data"), list):  # vLLM /score
            items = answer["data"]
        elif isinstance(answer, list):  # TEI
            items = answer
        else:
            raise BadAnswer(f"expected the {self.name} rerank answer, got {_shape(answer)}")
        values: list[float | None] = [None] * count
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            value = None
            if isinstance(item, dict):
                value = item.get("relevance_score", item.get("score"))
            if not isinstance(index, int) or not 0 <= index < count or values[index] is not None:
                raise BadAnswer(f"the {self.name} answer has a bad or repeated index: {item!r}"[:300])
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadAnswer(f"the {self.name} answer has a score that is not a finite number: {item!r}"[:300])
            values[index] = float(value)
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            raise BadAnswer(
                f"the {self.name} answer scores {count - len(missing)} of the {count} texts sent "
                f"(none for index {missing[0]})"
            )
        return values  # type: ignore[return-value]

    def logits(self, config: RemoteConfig, answer: Any, count: int) -> list[float]:
        """`rerank_score`s: the engine's logits, or the logits of its probabilities."""
        values = self.values(answer, count)
        return values if self.scale(config) == "logits" else [logit(value) for value in values]


def _shape(answer: Any) -> str:
    if isinstance(answer, dict):
        return "an object with " + (", ".join(sorted(answer)[:6]) or "no fields")
    return type(answer).__name__


PROTOCOLS = {
    protocol.name: protocol
    for protocol in (
        RerankProtocol("tei", "/rerank", 32, "logits"),
        RerankProtocol("vllm", "/v1/rerank", 1000, "probabilities"),
        RerankProtocol("infinity", "/rerank", 2048, "logits"),
        RerankProtocol("cohere", "/v1/rerank", 1000, "probabilities"),
    )
}


def batches(texts: Sequence[str], size: int) -> list[tuple[int, Sequence[str]]]:
    """(offset, texts) slices of at most `size` texts."""
    return [(start, texts[start : start + size]) for start in range(0, len(texts), size)]
