"""`RemoteConfig`: one engine to call, as `RAG_RERANKERS` (JSON form) or `RAG_EMBEDDER_URL` name it.

Frozen and hashable, so it sits in the frozen `Settings`. Checked here, with errors that name the
setting, so a typo fails at start-up rather than at the first request.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from search_service.errors import ConfigurationError

RERANK_PROTOCOLS = ("tei", "vllm", "infinity", "cohere")
EMBED_PROTOCOLS = ("openai", "tei")
SCORE_SCALES = ("auto", "logits", "probabilities")


@dataclass(frozen=True, kw_only=True)
class RemoteConfig:
    """Where and how to call an engine. `timeout_s` is the deadline of one call, retries included;
    `retries` more attempts follow a connection error, 5xx or 429, `backoff_s` apart (doubling);
    after `breaker_failures` failed calls in a row the breaker opens for `breaker_reset_s`;
    `batch_size` caps the texts per engine request (None: the protocol's documented limit);
    `path` overrides the endpoint (vllm: `/score` instead of `/v1/rerank`); `api_key_env` names
    the environment variable holding a bearer token (never the token itself); `scores` says what
    the engine returns (auto: the protocol's default, `protocols.py`); `extra` is merged into every
    request body (e.g. a vLLM pooling parameter)."""

    protocol: str
    url: str
    model: str | None = None
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.1
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    batch_size: int | None = None
    path: str | None = None
    api_key_env: str | None = None
    scores: str = "auto"
    extra_json: str = field(default="{}", repr=False)  # `extra`, canonical JSON (hashable)

    @property
    def extra(self) -> dict[str, Any]:
        return json.loads(self.extra_json)

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def where(self) -> str:
        """The engine for messages and logs: protocol and host, no path or credentials."""
        parts = urlsplit(self.url)
        return f"{self.protocol} at {parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":")

    def check(self, setting: str, protocols: tuple[str, ...]) -> RemoteConfig:
        if self.protocol not in protocols:
            raise ConfigurationError(
                f"{setting}: protocol must be {', '.join(protocols)}, got {self.protocol!r}"
            )
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{setting}: url must be an http(s):// URL, got {self.url!r}")
        if parts.username or parts.password:
            raise ConfigurationError(
                f"{setting}: put no credentials in the url; name an environment variable holding "
                "a bearer token with api_key_env"
            )
        numbers = {"timeout_s": self.timeout_s, "backoff_s": self.backoff_s,
                   "breaker_reset_s": self.breaker_reset_s}
        for name, value in numbers.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
                name == "timeout_s" and value == 0
            ):
                raise ConfigurationError(f"{setting}: {name} must be a positive number, got {value!r}")
        counts = {"retries": (self.retries, 0), "breaker_failures": (self.breaker_failures, 1),
                  "batch_size": (self.batch_size, 1)}
        for name, (value, minimum) in counts.items():
            if value is None and name == "batch_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigurationError(f"{setting}: {name} must be an integer >= {minimum}, got {value!r}")
        if self.scores not in SCORE_SCALES:
            raise ConfigurationError(f"{setting}: scores must be {', '.join(SCORE_SCALES)}, got {self.scores!r}")
        if self.path is not None and not self.path.startswith("/"):
            raise ConfigurationError(f"{setting}: path must start with '/', got {self.path!r}")
        return self

    @classmethod
    def from_dict(cls, raw: Any, setting: str, protocols: tuple[str, ...]) -> RemoteConfig:
        """A JSON object (`{"protocol", "url", "model", "timeout_s", ...}`) -> a checked config."""
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{setting}: `remote` must be a JSON object, got {raw!r}")
        known = {f.name for f in fields(cls)} - {"extra_json"} | {"extra"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigurationError(
                f"{setting}: unknown remote option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        for required in ("protocol", "url"):
            if not isinstance(raw.get(required), str) or not raw[required].strip():
                raise ConfigurationError(f"{setting}: remote needs a {required!r} string")
        values = {key: value for key, value in raw.items() if key != "extra"}
        values["protocol"] = values["protocol"].strip().lower()
        if "model" in values and values["model"] is not None and not isinstance(values["model"], str):
            raise ConfigurationError(f"{setting}: model must be a string")
        extra = raw.get("extra", {})
        if not isinstance(extra, dict):
            raise ConfigurationError(f"{setting}: extra must be a JSON object")
        values["extra_json"] = json.dumps(extra, sort_keys=True)
        return cls(**values).check(setting, protocols)
