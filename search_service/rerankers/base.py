"""The `Reranker` contract shared by every family, and the logic written once for all of them.

A family implements three stages, so benchmarks can time each one:
`tokenize` (text -> one unpadded feature per pair, CPU), `collate` + `forward` (pad a batch, run
it on the device, return one logit per pair) and `postprocess` (logits -> Python floats).
Everything else lives here: batching by length, OOM back-off, the forward lock, sigmoid, `rank`.
`with_scheduler` gives a copy whose batches are formed across concurrent calls
(`rerankers/batching/scheduler.py`) through `launch` and `read_back`; `batch_key` says which
features may share a batch. Each family declares its per-call `options` and checks a request's
values in `check_options`, so the API never needs to know a family.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import torch

from search_service.errors import ConfigurationError, InvalidRequestError
from search_service.rerankers.batching.budget import Launched, batch_rows, default_token_budget
from search_service.rerankers.checkpoint import FamilyLoader

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512  # FlagEmbedding's default
DEFAULT_BATCH_SIZE = 32


def bfloat16_on_gpu(device: str) -> str | None:
    """`default_dtype` of the families published in bfloat16 (or whose activations overflow
    float16): bfloat16 on a GPU that has it, else float16; None (the usual default) elsewhere."""
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return None


def sigmoid(value: float) -> float:
    # Split by sign so math.exp never overflows on large logits.
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


class Reranker(FamilyLoader):
    """Scores (query, passage) pairs; one instance per process, called from many request threads.
    `load` (from `FamilyLoader`) builds one from a checkpoint."""

    family: ClassVar[str] = "base"
    # The per-call family options `score`/`score_pairs`/`rank` accept besides the common
    # `normalize`, `batch_size` and `max_length` (llm: prompt); `check_options` refuses others.
    options: ClassVar[tuple[str, ...]] = ()
    # Set on the copy `with_scheduler` returns: its features are scored by the shared scheduler.
    _scheduler: Any = None

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
        self.token_budget = default_token_budget(device, dtype)
        # One forward at a time: models are not safe to run from several threads at once, and
        # concurrent batches would only fight over the same device memory.
        self._forward_lock = threading.Lock()

    @classmethod
    def default_dtype(cls, device: str) -> str | None:
        """The dtype `auto` means for this family on `device`; None: `resolve_dtype`'s default."""
        return None

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """A request's options (`max_length` and this family's `options`) as `score` keywords;
        an `InvalidRequestError` (400) for an option the family lacks or a value out of bounds."""
        unsupported = [
            name for name in options if name != "max_length" and name not in self.options
        ]
        if unsupported:
            raise InvalidRequestError(
                f"the {self.family} reranker does not support {', '.join(unsupported)} "
                f"(its options: {', '.join(self.options) or 'none'})",
                code="unsupported_option",
            )
        limit = self.max_supported_length
        if limit is not None and options.get("max_length", 0) > limit:
            raise InvalidRequestError(
                f"max_length: {options['max_length']} exceeds the model's limit of {limit}"
            )
        max_length = options.get("max_length") or self.max_length
        if options.get("query_max_length", 0) > max_length:
            raise InvalidRequestError(
                f"query_max_length: {options['query_max_length']} exceeds max_length "
                f"({max_length}); the query is part of the pair"
            )
        return dict(options)

    def use_token_cache(self, max_tokens: int) -> None:
        """Keep up to `max_tokens` passage token ids between calls (families that can)."""

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

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A collated CPU batch on the model's device."""
        if self.device.startswith("cuda"):
            # From pinned memory the copy is asynchronous: the forward is queued without waiting.
            batch = {key: value.pin_memory() for key, value in batch.items()}
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One relevance logit per row of the batch, on the device."""
        raise NotImplementedError

    def postprocess(self, logits: torch.Tensor) -> list[float]:
        return logits.reshape(-1).float().cpu().tolist()

    def batch_key(self, feature: Any) -> Hashable:
        """Features share a batch only when their keys are equal: the per-call options that the
        forward reads (layers, compression) and that `tokenize` did not already bake into the ids.
        """
        return None

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
        scores = self._score_pairs(pairs, batch_size, max_length, **options)
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

    def _score_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        batch_size: int | None,
        max_length: int | None,
        **options: Any,
    ) -> list[Any]:
        """What `postprocess` gives for each pair (a score, or a row of scores), in order."""
        checked = [self._check_pair(pair) for pair in pairs]
        length = self.max_length if max_length is None else self._check_max_length(max_length)
        unique, expand = self._distinct(checked)
        features = self.tokenize(unique, length, **options)
        return expand(self._score_features(features, batch_size or self.batch_size))

    @staticmethod
    def _distinct(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], Any]:
        """A pair repeated in one call is tokenized and scored once: the distinct pairs, and a
        function that maps their scores back onto `pairs`."""
        unique = list(dict.fromkeys(pairs))
        if len(unique) == len(pairs):
            return pairs, lambda scores: scores
        position = {pair: index for index, pair in enumerate(unique)}
        return unique, lambda scores: [scores[position[pair]] for pair in pairs]

    def with_scheduler(self, scheduler: Any) -> Reranker:
        """A shallow copy (same model, tokenizer and forward lock) whose scoring goes through
        `scheduler.score(features)`, which batches the pairs of concurrent calls together."""
        clone = copy.copy(self)
        clone._forward_lock = self._forward_lock
        clone._scheduler = scheduler
        return clone

    def _score_features(self, features: Sequence[Any], batch_size: int) -> list[float]:
        """One score per feature, in order: through the scheduler when this copy has one (which
        ignores `batch_size`: its batches follow its token budget), else in batches of this call."""
        if self._scheduler is not None:
            return self._scheduler.score(features)
        return self.score_batches(features, batch_size)

    def score_batches(self, features: Sequence[Any], batch_size: int) -> list[float]:
        return self.read_back(self.launch(features, batch_size))

    def launch(self, features: Sequence[Any], batch_size: int) -> Launched:
        """Run the forward of every batch of `features`; `read_back` gives their scores.

        On a CPU each batch is read back as it finishes. On a GPU the outputs stay there: the
        next batch is launched while the GPU still runs this one, and nothing waits for the
        device until `read_back` (the scheduler launches its next batch before that).
        """
        # Longest first (as FlagEmbedding does) so each batch pads little and an OOM shows up early.
        order = sorted(range(len(features)), key=lambda index: -len(features[index]))
        launched = Launched([None] * len(features))
        deferred = self.defers_results()
        start = 0
        while start < len(order):
            rows = batch_rows(len(features[order[start]]), batch_size, self.token_budget)
            batch_indices = order[start : start + rows]
            try:
                output = self._forward_batch([features[index] for index in batch_indices])
            except torch.OutOfMemoryError:  # also what torch.cuda.OutOfMemoryError names
                if len(batch_indices) == 1:
                    raise
                output = None
            if output is None:
                # Outside the except block, so the failed batch's tensors are freed before retrying.
                batch_size = max(1, len(batch_indices) // 2)
                log.warning("%s: out of memory, retrying with batch size %d", self.name, batch_size)
                self._release_cached_memory()
                continue
            launched.pending.append((batch_indices, output))
            if not deferred:
                self._collect(launched.pending, launched.scores)
            start += len(batch_indices)
        return launched

    def read_back(self, launched: Launched) -> list[Any]:
        """The scores of launched batches, in the order of their features (waits for the device)."""
        self._collect(launched.pending, launched.scores)
        return launched.scores

    def defers_results(self) -> bool:
        return self.device.startswith("cuda")

    def _forward_batch(self, features: Sequence[Any]) -> Any:
        """The forward's output for one batch, left where it was computed (see `postprocess`)."""
        with torch.inference_mode():
            batch = self.collate(features)
            with self._forward_lock:
                return self.forward(batch)

    def _collect(self, pending: list[tuple[list[int], Any]], scores: list[Any]) -> None:
        """Postprocess the pending outputs into `scores` (waiting for the device), and clear them."""
        with torch.inference_mode():
            for batch_indices, output in pending:
                for index, value in zip(batch_indices, self.postprocess(output), strict=True):
                    scores[index] = value
        pending.clear()

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
        state.pop("_scheduler", None)  # a copy scores directly (a scheduler owns a thread)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._forward_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, device={self.device!r}, dtype={self.dtype})"
        )
