"""The `Reranker` contract shared by every family, and the logic written once for all of them.

A family implements three stages, so benchmarks can time each one:
`tokenize` (text -> one unpadded feature per pair, CPU), `collate` + `forward` (pad a batch, run
it on the device, return one logit per pair) and `postprocess` (logits -> Python floats).
Everything else lives here: batching by length, OOM back-off, the forward lock, sigmoid, `rank`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from search_service.errors import ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512  # FlagEmbedding's default
DEFAULT_BATCH_SIZE = 32


def sigmoid(value: float) -> float:
    # Split by sign so math.exp never overflows on large logits.
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


class Reranker:
    """Scores (query, passage) pairs; one instance per process, called from many request threads."""

    family: ClassVar[str] = "base"
    # The per-call family options `score`/`score_pairs`/`rank` accept besides the common
    # `normalize`, `batch_size` and `max_length` (llm: prompt). The API refuses any other option
    # with `unsupported_option` before the model runs.
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        name: str,
        device: str,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        self.name = name
        self.device = device
        self.dtype = dtype
        self.max_length = self._check_max_length(max_length)
        self.batch_size = batch_size
        # One forward at a time: models are not safe to run from several threads at once, and
        # concurrent batches would only fight over the same device memory.
        self._forward_lock = threading.Lock()

    @classmethod
    def load(
        cls, checkpoint: Any, *, device: Any = None, dtype: Any = None, **options: Any
    ) -> Reranker:
        """Build the family's reranker from a resolved `Checkpoint` (see `load_reranker`)."""
        raise NotImplementedError

    # -- stages, implemented by each family --------------------------------------------------------

    @property
    def max_supported_length(self) -> int | None:
        """The longest input the model's positions allow, or None when unbounded."""
        return None

    def tokenize(
        self, pairs: Sequence[tuple[str, str]], max_length: int, **options: Any
    ) -> list[Any]:
        """One unpadded feature per pair; `len(feature)` is its token count. Must be thread-safe.

        `options` are the family's per-call options given to `score`/`score_pairs`/`rank` (the
        llm family's `prompt`); a family that takes none may leave them out of its signature.
        """
        raise NotImplementedError

    def collate(self, features: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Pad a batch of features into device tensors."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One relevance logit per row of the batch, on the device."""
        raise NotImplementedError

    def postprocess(self, logits: torch.Tensor) -> list[float]:
        return logits.reshape(-1).float().cpu().tolist()

    # -- the public scoring API ------------------------------------------------------------------

    def score(
        self,
        query: str,
        passages: Sequence[str],
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        **options: Any,
    ) -> list[float]:
        """One score per passage, in the caller's order; sigmoid-mapped to (0, 1) if `normalize`.

        `options`: the family's per-call options, passed on to its `tokenize` (llm: `prompt`).
        """
        pairs = [(query, passage) for passage in passages]
        return self.score_pairs(
            pairs, normalize=normalize, batch_size=batch_size, max_length=max_length, **options
        )

    def score_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        **options: Any,
    ) -> list[float]:
        if not pairs:
            return []
        checked = [self._check_pair(pair) for pair in pairs]
        length = self.max_length if max_length is None else self._check_max_length(max_length)
        features = self.tokenize(checked, length, **options)
        scores = self._score_features(features, batch_size or self.batch_size)
        return [sigmoid(score) for score in scores] if normalize else scores

    def rank(
        self,
        query: str,
        passages: Sequence[str],
        top_n: int | None = None,
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        **options: Any,
    ) -> list[tuple[int, float]]:
        """(passage index, score) pairs, best first; equal scores keep the passages' order."""
        scores = self.score(
            query,
            passages,
            normalize=normalize,
            batch_size=batch_size,
            max_length=max_length,
            **options,
        )
        ranked = sorted(enumerate(scores), key=lambda item: -item[1])
        return ranked if top_n is None else ranked[: max(top_n, 0)]

    # -- shared machinery ------------------------------------------------------------------------

    def _score_features(self, features: Sequence[Any], batch_size: int) -> list[float]:
        # Longest first (as FlagEmbedding does) so each batch pads little and an OOM shows up early.
        order = sorted(range(len(features)), key=lambda index: -len(features[index]))
        scores: list[float | None] = [None] * len(features)
        start = 0
        while start < len(order):
            batch_indices = order[start : start + batch_size]
            try:
                batch_scores = self._run_batch([features[index] for index in batch_indices])
            except torch.OutOfMemoryError:  # also what torch.cuda.OutOfMemoryError names
                if len(batch_indices) == 1:
                    raise
                batch_scores = None
            if batch_scores is None:
                # Outside the except block, so the failed batch's tensors are freed before retrying.
                batch_size = max(1, len(batch_indices) // 2)
                log.warning("%s: out of memory, retrying with batch size %d", self.name, batch_size)
                self._release_cached_memory()
                continue
            for index, value in zip(batch_indices, batch_scores, strict=True):
                scores[index] = value
            start += len(batch_indices)
        return scores  # type: ignore[return-value]

    def _run_batch(self, features: Sequence[Any]) -> list[float]:
        with torch.inference_mode():
            batch = self.collate(features)
            with self._forward_lock:
                return self.postprocess(self.forward(batch))

    def _release_cached_memory(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _check_max_length(self, max_length: int) -> int:
        if max_length < 1:
            raise ConfigurationError(f"max_length must be at least 1, got {max_length}")
        limit = self.max_supported_length
        if limit is not None and max_length > limit:
            log.warning(
                "%s: max_length %d exceeds the model's %d positions; using %d",
                self.name,
                max_length,
                limit,
                limit,
            )
            return limit
        return max_length

    @staticmethod
    def _check_pair(pair: Sequence[str]) -> tuple[str, str]:
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"expected a (query, passage) pair, got {pair!r}")
        query, passage = pair
        if not isinstance(query, str) or not isinstance(passage, str):
            raise TypeError("query and passage must both be strings")
        return query, passage

    def __getstate__(self) -> dict[str, Any]:
        # Locks cannot be copied or pickled; a copy gets its own (tests deep-copy a loaded model).
        state = self.__dict__.copy()
        del state["_forward_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._forward_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, device={self.device!r}, dtype={self.dtype})"
        )
