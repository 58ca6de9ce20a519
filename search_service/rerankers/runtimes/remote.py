"""The `remote` runtime: a reranker entry scored by an engine over HTTP (TEI, vLLM, Infinity,
Cohere or another search-service) instead of weights loaded here.

Chosen per `RAG_RERANKERS` entry (`{"name": ..., "remote": {"protocol", "url", "model", ...}}`),
never by `RAG_RERANKER_RUNTIME`. A `RemoteReranker` answers the same calls as a loaded
`Reranker` (score, score_pairs, rank, check_options), so candidates, the score cache,
thresholds, context packing and metrics stay in this service. Its scores are logits
(`remote/protocols.py` maps each engine's scale); errors become `RerankerUnavailableError` (503:
down, deadline, 5xx, breaker open) or `RerankerRemoteRefusedError` (502: a wrong model name, an
answer of the wrong shape). Each call is split to the engine's batch limit; the engine batches
concurrent requests itself, so no local batch scheduler runs for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from search_service.errors import (
    ConfigurationError,
    InvalidRequestError,
    RerankerRemoteRefusedError,
    RerankerUnavailableError,
)
from search_service.remote.client import RemoteClient, RemoteRejected, RemoteUnavailable
from search_service.remote.config import RERANK_PROTOCOLS, RemoteConfig
from search_service.remote.protocols import PROTOCOLS, BadAnswer, batches
from search_service.rerankers.base import sigmoid
from search_service.rerankers.runtimes.registry import Runtime

log = logging.getLogger(__name__)

PARALLEL_BATCHES = 4  # parts of one call in flight at once (a 100-candidate call to TEI: 4 x 32)
PROBE = ("what is a panda?", "The giant panda is a bear species endemic to China.")


class RemoteReranker:
    family: ClassVar[str] = "remote"
    runtime: ClassVar[str] = "remote"
    options: ClassVar[tuple[str, ...]] = ()  # the engine has its own; none are sent per request
    device = "remote"
    dtype = None
    max_length = None
    max_supported_length = None
    tokenizer = None  # cuts (`max_tokens_per_doc`, TEI's left truncation) are left to the engine
    text_tokenizer = None

    def __init__(self, config: RemoteConfig, *, name: str, client: RemoteClient | None = None):
        self.config = config.check(f"reranker {name!r}", RERANK_PROTOCOLS)
        self.entry = name  # the RAG_RERANKERS name
        self.name = config.model or name  # what a request may also call it (like a loaded id)
        self.protocol = PROTOCOLS[config.protocol]
        self.batch_size = config.batch_size or self.protocol.batch_limit
        self.client = client or RemoteClient(config)
        self.token_budget = None
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_BATCHES, thread_name_prefix=f"remote-{name}")

    def use_token_cache(self, max_tokens: int) -> None:
        """Nothing is tokenized here."""

    def with_scheduler(self, scheduler: Any) -> RemoteReranker:
        return self

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options:
            raise InvalidRequestError(
                f"the remote reranker {self.entry!r} ({self.config.protocol}) takes no per-request "
                f"options ({', '.join(sorted(options))}): the engine applies its own",
                code="unsupported_option",
            )
        return {}

    def score(
        self, query: str, passages: Sequence[str], normalize: bool = False,
        batch_size: int | None = None, max_length: int | None = None, **options: Any,
    ) -> list[float]:
        """One logit per passage (sigmoid with `normalize`), in order, from the engine."""
        self.check_options(options)
        passages = list(passages)
        if not passages:
            return []
        unique = list(dict.fromkeys(passages))  # a text repeated in one call is sent once
        chunks = [chunk for _offset, chunk in batches(unique, min(batch_size or self.batch_size, self.batch_size))]
        if len(chunks) == 1:
            answers = [self._call(query, chunks[0])]
        else:  # split to the engine's limit: the parts go out side by side on pooled connections
            answers = list(self._pool.map(lambda chunk: self._call(query, chunk), chunks))
        scores: dict[str, float] = {}
        for chunk, values in zip(chunks, answers, strict=True):
            scores.update(zip(chunk, values, strict=True))
        values = [scores[passage] for passage in passages]
        return [sigmoid(value) for value in values] if normalize else values

    def score_pairs(self, pairs: Sequence[Sequence[str]], normalize: bool = False, **options: Any) -> list[float]:
        by_query: dict[str, list[int]] = {}
        for index, (query, _passage) in enumerate(pairs):
            by_query.setdefault(query, []).append(index)
        scores: list[float] = [0.0] * len(pairs)
        for query, indices in by_query.items():
            values = self.score(query, [pairs[i][1] for i in indices], normalize=normalize, **options)
            for index, value in zip(indices, values, strict=True):
                scores[index] = value
        return scores

    def rank(
        self, query: str, passages: Sequence[str], top_n: int | None = None, normalize: bool = False,
        **options: Any,
    ) -> list[tuple[int, float]]:
        ranked = sorted(enumerate(self.score(query, passages, normalize=normalize, **options)),
                        key=lambda item: -item[1])
        return ranked if top_n is None else ranked[: max(top_n, 0)]

    def _call(self, query: str, texts: Sequence[str]) -> list[float]:
        path, body = self.protocol.request(self.config, query, texts)
        what = f"the remote reranker {self.entry!r} ({self.config.protocol} engine)"
        try:
            answer = self.client.post(path, body)
            return self.protocol.logits(self.config, answer, len(texts))
        except RemoteUnavailable as error:
            reason = {"breaker_open": "its circuit breaker is open after repeated failures",
                      "timeout": f"no answer within {self.config.timeout_s} s",
                      "connect": "it cannot be reached",
                      "server_error": "it answers with server errors",
                      "bad_response": "its answer is not JSON"}.get(error.reason, error.reason)
            retry = error.retry_after if error.retry_after is not None else 1
            raise RerankerUnavailableError(
                f"{what} is unavailable: {reason}; retry later, or send rerank_fallback: \"dense\" "
                "to get the candidates in retrieval order",
                detail=str(error), retry_after=max(1, round(retry)),
            ) from None
        except RemoteRejected as error:
            raise RerankerRemoteRefusedError(
                f"{what} refused the request (HTTP {error.status}): {error.detail}",
                detail=f"{self.config.where}: {error}",
            ) from None
        except BadAnswer as error:
            raise RerankerRemoteRefusedError(
                f"{what} answered in a shape its protocol does not have: {error}",
                detail=f"{self.config.where}: {error}",
            ) from None

    def probe(self, setting: str) -> None:
        """Score one pair at start-up: a refusal (wrong model name, wrong protocol) is a
        `ConfigurationError`; an engine that is down only logs a warning (it may come up later,
        and requests get 503 until then)."""
        try:
            self._call(PROBE[0], [PROBE[1]])
        except RerankerRemoteRefusedError as error:
            raise ConfigurationError(
                f"{setting}: {error.message} (engine {self.config.where}, model {self.config.model!r})"
            ) from None
        except RerankerUnavailableError as error:
            log.warning("%s: %s (%s); starting anyway", setting, error.message, error.detail)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()

    def __repr__(self) -> str:
        return f"RemoteReranker(name={self.entry!r}, {self.config.where}, model={self.config.model!r})"


class RemoteRuntime(Runtime):
    """Connects to an engine instead of building from a checkpoint (`connect`)."""

    name = "remote"

    def connect(self, config: RemoteConfig, *, name: str, setting: str, probe: bool = True) -> RemoteReranker:
        reranker = RemoteReranker(config, name=name)
        if probe:
            try:
                reranker.probe(setting)
            except BaseException:
                reranker.close()
                raise
        return reranker

    def build(self, family, checkpoint, *, device, dtype, **options):
        raise ConfigurationError(
            "the remote runtime is chosen per RAG_RERANKERS entry with a `remote` object "
            '([{"name": "gpu", "remote": {"protocol": "tei", "url": "http://tei:8080"}}]), not by '
            "RAG_RERANKER_RUNTIME"
        )
