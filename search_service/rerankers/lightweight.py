"""Lightweight rerankers (bge-reranker-v2.5-gemma2-lightweight): layer cut-off and token compression.

Scores as FlagEmbedding 1.4.2's `LightWeightFlagLLMReranker` does: the input is `<bos> A: {query}
\\n B: {passage} \\n {prompt}` (built by `decoder_inputs.DecoderInputBuilder`, BOS always, right
padding; it documents the truncation: the pair is cut to `max_length + len(sep) + len(prompt)`
tokens before `sep + prompt` is appended), with this family's own default prompt
(`DEFAULT_PROMPT`). The model is `gemma2_lightweight.LightweightGemma2ForScoring`, our code on the
published weights (no `trust_remote_code`); its docstring describes the forward.

    reranker.score(query, passages, cutoff_layers=28, compress_ratio=2, compress_layers=[24, 40])
    reranker.score_layers(query, passages, cutoff_layers=[24, 28])   # {24: [...], 28: [...]}

Options (load-time defaults, each overridable per call): `cutoff_layers` (the layer read; default
the last, as FlagEmbedding), `compress_ratio` (1: no compression), `compress_layers` (default
[8]), `prompt`.

FlagEmbedding behaviours kept for parity:
- the i-th of the sorted, distinct requested layers is scored by head i, not by the head of that
  layer number; so `score(cutoff_layers=28)` uses head 0, and `score_layers(cutoff_layers=[24,
  28])[28]` (head 1) differs from it. `score_layers` returns the layers in that (sorted) order;
- no attention softcapping (FlagEmbedding runs SDPA, which ignores it); `attn_logit_softcapping=
  True` at load applies the checkpoint's cap instead (eager attention; differs from FlagEmbedding).
Where we differ on purpose: a layer without a head is an error (FlagEmbedding drops it with a
warning); the requested dtype is honoured, and `auto` on a CUDA GPU is bfloat16 where supported
(Gemma2's activations overflow float16; FlagEmbedding forces float16 on a GPU).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from search_service.devices import resolve_device, resolve_dtype
from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers.base import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    Reranker,
    sigmoid,
)
from search_service.rerankers.checkpoint import Checkpoint
from search_service.rerankers.decoder_inputs import BosPolicy, DecoderFeature, DecoderInputBuilder
from search_service.rerankers.gemma2_lightweight import (
    LightweightGemma2ForScoring,
    attention_implementation,
    load_lightweight_gemma2,
)

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "Predict whether passage B contains an answer to query A."
DEFAULT_COMPRESS_LAYERS = (8,)
Layers = int | Iterable[int]


@dataclass(frozen=True, slots=True)
class Compression:
    ratio: int = 1
    layers: tuple[int, ...] = DEFAULT_COMPRESS_LAYERS


@dataclass(frozen=True, slots=True)
class LightweightFeature:
    """One pair's inputs and how to score it: the layers (head order) and the compression."""

    inputs: DecoderFeature
    layers: tuple[int, ...]
    compression: Compression

    def __len__(self) -> int:
        return len(self.inputs)


class LightweightReranker(Reranker):
    family = "lightweight"
    options = frozenset({"prompt", "cutoff_layers", "compress_ratio", "compress_layers", "query_max_length"})

    def __init__(
        self,
        *,
        model: LightweightGemma2ForScoring,
        tokenizer: Any,
        name: str,
        device: str,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        query_max_length: int | None = None,
        cutoff_layers: Layers | None = None,
        compress_ratio: int = 1,
        compress_layers: Iterable[int] = DEFAULT_COMPRESS_LAYERS,
        prompt: str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        try:
            self.inputs = DecoderInputBuilder(
                tokenizer, bos_policy=BosPolicy.ALWAYS, padding_side="right"
            )
        except ValueError as error:
            raise ModelLoadError(f"reranker {name!r}: {error}") from error
        self.query_max_length = query_max_length
        self.prompt = DEFAULT_PROMPT if prompt is None else prompt
        default = model.config.num_hidden_layers if cutoff_layers is None else cutoff_layers
        self.cutoff_layer = self._one_layer(default)
        self.compression = self._compression(compress_ratio, compress_layers, Compression())
        super().__init__(
            name=name, device=device, dtype=dtype, max_length=max_length, batch_size=batch_size
        )

    @classmethod
    def load(
        cls,
        checkpoint: Checkpoint,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        attn_logit_softcapping: bool = False,
        attn_implementation: str | None = None,
        **options: Any,
    ) -> LightweightReranker:
        """Our model code on the checkpoint's weights; `trust_remote_code` is never needed.

        `attn_logit_softcapping`: False (default) scores as FlagEmbedding does, without the
        attention softcapping; True applies it (eager attention). `options`: max_length,
        batch_size, query_max_length, cutoff_layers, compress_ratio, compress_layers, prompt.
        The tokenizer is loaded from tokenizer.json as it is, as transformers 4.46 does.
        """
        from transformers import PreTrainedTokenizerFast

        device_name = resolve_device(device)
        if dtype in (None, "auto") and device_name.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        torch_dtype = resolve_dtype(dtype, device_name)
        source = checkpoint.name_or_path
        try:
            implementation = attention_implementation(attn_logit_softcapping, attn_implementation)
        except ValueError as error:
            raise ConfigurationError(f"reranker {source!r}: {error}") from error
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(source, **checkpoint.hub_options)
            model, info = load_lightweight_gemma2(
                source,
                dtype=torch_dtype,
                attn_logit_softcapping=attn_logit_softcapping,
                attn_implementation=implementation,
                **checkpoint.hub_options,
            )
            model.to(device_name)
        except Exception as error:  # from_pretrained raises OSError, ValueError, hub errors...
            raise ModelLoadError(f"cannot load reranker {source!r}: {error}") from error
        if info["missing_keys"]:
            missing = ", ".join(sorted(info["missing_keys"]))
            raise ModelLoadError(f"reranker {source!r} lacks weights: {missing}")
        log.info("loaded lightweight reranker %s on %s (%s)", source, device_name, torch_dtype)
        return cls(
            model=model,
            tokenizer=tokenizer,
            name=source,
            device=device_name,
            dtype=torch_dtype,
            **options,
        )

    @property
    def layers(self) -> list[int]:
        """The layers that have a score head (what `cutoff_layers` may name)."""
        return list(self.model.config.score_layers)

    @property
    def max_supported_length(self) -> int | None:
        # The passage budget; the query, prompt and separators come on top (as in FlagEmbedding).
        return getattr(self.model.config, "max_position_embeddings", None)

    # -- public API ------------------------------------------------------------------------------

    def score_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        cutoff_layers: Layers | None = None,
        **options: Any,
    ) -> list[float]:
        """One score per pair from ONE layer (`cutoff_layers`: an int or a one-item list);
        `score()` (from the base class) builds the pairs and comes here."""
        layer = self.cutoff_layer if cutoff_layers is None else self._one_layer(cutoff_layers)
        return super().score_pairs(
            pairs,
            normalize=normalize,
            batch_size=batch_size,
            max_length=max_length,
            cutoff_layers=(layer,),
            **options,
        )

    def score_layers(
        self,
        query: str,
        passages: Sequence[str],
        cutoff_layers: Layers,
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        **options: Any,
    ) -> dict[int, list[float]]:
        """`{layer: one score per passage}` for several layers from one forward pass per batch,
        keyed in ascending layer order (repeats dropped); layer i of that order uses head i.
        `options`: compress_ratio, compress_layers, prompt, query_max_length."""
        layers = self._layers(cutoff_layers)
        if not passages:
            return {layer: [] for layer in layers}
        pairs = [self._check_pair((query, passage)) for passage in passages]
        length = self.max_length if max_length is None else self._check_max_length(max_length)
        features = self.tokenize(pairs, length, cutoff_layers=layers, **options)
        rows = self._score_features(features, batch_size or self.batch_size)
        columns = [[row] for row in rows] if len(layers) == 1 else rows
        scores = {layer: [row[i] for row in columns] for i, layer in enumerate(layers)}
        if normalize:
            return {layer: [sigmoid(value) for value in values] for layer, values in scores.items()}
        return scores

    # -- stages ----------------------------------------------------------------------------------

    def tokenize(
        self,
        pairs: Sequence[tuple[str, str]],
        max_length: int,
        *,
        cutoff_layers: Layers | None = None,
        compress_ratio: int | None = None,
        compress_layers: Iterable[int] | None = None,
        prompt: str | None = None,
        query_max_length: int | None = None,
    ) -> list[LightweightFeature]:
        """LightWeightFlagLLMReranker's inputs, tagged with the layers and the compression
        (defaults: the instance's)."""
        layers = (self.cutoff_layer,) if cutoff_layers is None else self._layers(cutoff_layers)
        compression = self._compression(compress_ratio, compress_layers, self.compression)
        built = self.inputs.build(
            pairs,
            max_length,
            prompt=self.prompt if prompt is None else prompt,
            query_max_length=query_max_length or self.query_max_length,
        )
        return [LightweightFeature(feature, layers, compression) for feature in built]

    def collate(self, features: Sequence[LightweightFeature]) -> dict[str, Any]:
        settings = {(feature.layers, feature.compression) for feature in features}
        if len(settings) != 1:
            raise ValueError("a batch must be scored with one set of layers and compression")
        inputs = [feature.inputs for feature in features]
        batch: dict[str, Any] = {
            key: value.to(self.device) for key, value in self.inputs.collate(inputs).items()
        }
        layers, compression = settings.pop()
        batch.update(
            query_lengths=[feature.query_length for feature in inputs],
            prompt_lengths=[feature.prompt_length for feature in inputs],
            cutoff_layers=layers,
            compress_layers=compression.layers,
            compress_ratio=compression.ratio,
        )
        return batch

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits `[rows, layers]`, the columns in ascending layer order."""
        return self.model(**batch)

    def postprocess(self, logits: torch.Tensor) -> list[Any]:
        """One float per row for one layer (what `score` needs), else one list per row."""
        values = logits.float().cpu()
        return values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()

    # -- helpers ---------------------------------------------------------------------------------

    def _layers(self, cutoff_layers: Layers) -> tuple[int, ...]:
        """Distinct layers, ascending (the head order), each checked to have a head."""
        requested = _integers(cutoff_layers, "cutoff_layers")
        try:
            return tuple(self.model.check_layers(requested))
        except ValueError as error:
            raise ConfigurationError(str(error)) from error

    def _one_layer(self, cutoff_layers: Layers) -> int:
        layers = self._layers(cutoff_layers)
        if len(layers) != 1:
            raise ConfigurationError(
                f"score() reads one layer, got cutoff_layers={list(layers)}; "
                "use score_layers() for several"
            )
        return layers[0]

    @staticmethod
    def _compression(
        ratio: int | None, layers: Iterable[int] | None, default: Compression
    ) -> Compression:
        ratio = default.ratio if ratio is None else ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
            raise ConfigurationError(f"compress_ratio must be an integer >= 1, got {ratio!r}")
        chosen = default.layers if layers is None else tuple(_integers(layers, "compress_layers"))
        return Compression(ratio, tuple(sorted(set(chosen))))


def _integers(value: Any, name: str) -> list[int]:
    """An int or an iterable of ints, as a list; booleans and other types are refused."""
    try:
        items = [value] if not isinstance(value, Iterable) else list(value)
        if any(isinstance(item, bool) for item in items):
            raise TypeError("a boolean is not a number")
        return [operator.index(item) for item in items]
    except TypeError as error:
        raise ConfigurationError(f"{name} must be integers, got {value!r}") from error
