"""What the decoder-only reranker families share; each family module keeps its model class
(`auto_model` or its own `_load_model`), its forward and its own options.

`DecoderReranker` (`llm`, and the base of the next): a causal LM on FlagEmbedding's inputs
(`decoder_inputs.py`), with `prompt` and `query_max_length` defaults. `LayeredDecoderReranker`
(`layerwise`, `lightweight`: a score head per layer): `cutoff_layers`, `score` from one layer,
`score_layers` from several in one forward pass per batch.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from search_service.errors import ConfigurationError, InvalidRequestError, ModelLoadError
from search_service.rerankers.base import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, Reranker, sigmoid
from search_service.rerankers.families.decoder_inputs import (
    BosPolicy,
    DecoderFeature,
    DecoderInputBuilder,
)

Layers = int | Iterable[int]


def as_integers(value: Any, name: str) -> list[int]:
    """An int or an iterable of ints, as a list; booleans and other types are refused."""
    try:
        items = [value] if not isinstance(value, Iterable) else list(value)
        if any(isinstance(item, bool) for item in items):
            raise TypeError("a boolean is not a number")
        return [operator.index(item) for item in items]
    except TypeError as error:
        raise ConfigurationError(f"{name} must be integers, got {value!r}") from error


def layer_span(values: list[int]) -> str:
    consecutive = values == list(range(values[0], values[-1] + 1))
    return f"{values[0]}..{values[-1]}" if consecutive and len(values) > 2 else str(values)


class DecoderReranker(Reranker):
    """A decoder-only reranker on `DecoderInputBuilder` inputs; `prompt` and `query_max_length`
    are load-time defaults that `score(..., prompt=..., query_max_length=...)` overrides."""

    bos_policy: ClassVar[BosPolicy] = BosPolicy.IF_DISTINCT
    padding_side: ClassVar[str | None] = None  # None: the tokenizer's
    default_prompt: ClassVar[str | None] = None  # None: decoder_inputs.DEFAULT_PROMPT

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        name: str,
        device: str,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        query_max_length: int | None = None,
        prompt: str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        try:
            self.inputs = DecoderInputBuilder(
                tokenizer, bos_policy=self.bos_policy, padding_side=self.padding_side
            )
        except ValueError as error:
            raise ModelLoadError(f"reranker {name!r}: {error}") from error
        self.query_max_length = query_max_length
        # The model's `tokenizers` backend, safe to share between threads (never reconfigured).
        self.text_tokenizer = self.inputs._backend
        self.prompt = self.default_prompt if prompt is None else prompt
        super().__init__(
            name=name, device=device, dtype=dtype, max_length=max_length, batch_size=batch_size
        )
        self._prepare()

    def _prepare(self) -> None:
        """A family's own checks and setup, run at the end of `__init__`."""

    @property
    def max_supported_length(self) -> int | None:
        # The passage budget; the query, prompt and separators come on top (as in FlagEmbedding).
        return getattr(self.model.config, "max_position_embeddings", None)

    def tokenize(
        self,
        pairs: Sequence[tuple[str, str]],
        max_length: int,
        *,
        prompt: str | None = None,
        query_max_length: int | None = None,
    ) -> list[DecoderFeature]:
        """FlagEmbedding's inputs; `prompt` and `query_max_length` default to the instance's."""
        return self.inputs.build(
            pairs,
            max_length,
            prompt=self.prompt if prompt is None else prompt,
            query_max_length=query_max_length or self.query_max_length,
        )

    def collate(self, features: Sequence[Any]) -> dict[str, Any]:
        """The padded batch on the device; features need `input_ids`."""
        return self.to_device(self.inputs.collate(features))


@dataclass(frozen=True, slots=True)
class LayeredFeature:
    """One pair's unpadded inputs and the layers to score it with (in the forward's order)."""

    inputs: DecoderFeature
    layers: tuple[int, ...]

    @property
    def input_ids(self) -> list[int]:
        return self.inputs.input_ids

    def __len__(self) -> int:
        return len(self.inputs)


class LayeredDecoderReranker(DecoderReranker):
    """A decoder with a score head on several layers. Its model's `check_layers(layers)` gives
    them sorted and distinct, and raises (ConfigurationError or ValueError) for one without a head.
    """

    bos_policy = BosPolicy.ALWAYS
    padding_side = "right"
    # True: layers are scored (and keyed) in ascending order, the i-th by head i (lightweight);
    # False: in the caller's order, each by its own head (layerwise).
    ascending_layers: ClassVar[bool] = False

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        name: str,
        device: str,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        query_max_length: int | None = None,
        cutoff_layers: Layers | None = None,
        prompt: str | None = None,
    ):
        super().__init__(
            model=model,
            tokenizer=tokenizer,
            name=name,
            device=device,
            dtype=dtype,
            max_length=max_length,
            batch_size=batch_size,
            query_max_length=query_max_length,
            prompt=prompt,
        )
        default = model.config.num_hidden_layers if cutoff_layers is None else cutoff_layers
        self.cutoff_layer = self._one_layer(default)

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
        """`{layer: one score per passage}` for several layers, from one forward pass per batch,
        keyed in head order (see `ascending_layers`; repeats dropped); options as `score`."""
        pairs = [(query, passage) for passage in passages]
        return self.score_pairs_layers(
            pairs, cutoff_layers, normalize, batch_size, max_length, **options
        )

    def score_pairs_layers(
        self,
        pairs: Sequence[Sequence[str]],
        cutoff_layers: Layers,
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        **options: Any,
    ) -> dict[int, list[float]]:
        layers = self._layers(cutoff_layers)
        if not pairs:
            return {layer: [] for layer in layers}
        rows = self._score_pairs(pairs, batch_size, max_length, cutoff_layers=layers, **options)
        columns = [[row] for row in rows] if len(layers) == 1 else rows
        scores = {layer: [row[i] for row in columns] for i, layer in enumerate(layers)}
        if normalize:
            return {layer: [sigmoid(value) for value in values] for layer, values in scores.items()}
        return scores

    @property
    def layers(self) -> Sequence[int]:
        """The layers that have a score head (what `cutoff_layers` may name)."""
        raise NotImplementedError

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """As `Reranker.check_options`; `cutoff_layers` (an int or a list) must name one layer
        with a score head, and comes back as an int."""
        checked = super().check_options(options)
        if "cutoff_layers" in checked:
            layers = checked["cutoff_layers"]
            layers = layers if isinstance(layers, list) else [layers]
            if len(set(layers)) != 1:
                raise InvalidRequestError(f"cutoff_layers: one layer per request, got {layers}")
            valid = list(self.layers)
            if layers[0] not in valid:
                raise InvalidRequestError(
                    f"cutoff_layers: layer {layers[0]} has no score head; choose from "
                    f"{layer_span(valid)}"
                )
            checked["cutoff_layers"] = layers[0]
        return checked

    # -- stages ----------------------------------------------------------------------------------

    def tokenize(  # type: ignore[override]
        self,
        pairs: Sequence[tuple[str, str]],
        max_length: int,
        *,
        cutoff_layers: Layers | None = None,
        **options: Any,
    ) -> list[LayeredFeature]:
        """FlagEmbedding's inputs, tagged with the layers to read (default: the instance's
        layer); `options` (`prompt`, `query_max_length`) as `DecoderReranker.tokenize`."""
        layers = (self.cutoff_layer,) if cutoff_layers is None else self._layers(cutoff_layers)
        built = super().tokenize(pairs, max_length, **options)
        return [LayeredFeature(feature, layers) for feature in built]

    def collate(self, features: Sequence[LayeredFeature]) -> dict[str, Any]:
        if len({self.batch_key(feature) for feature in features}) != 1:
            raise ValueError("a batch must be scored with one set of layers (and options)")
        return super().collate(features)

    def batch_key(self, feature: LayeredFeature) -> Hashable:
        return feature.layers  # one set of layers per batch (see `collate`)

    def postprocess(self, logits: torch.Tensor) -> list[Any]:
        """One float per row for one layer (what `score` needs), else one list per row."""
        values = logits.float().cpu()
        return values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()

    # -- helpers ---------------------------------------------------------------------------------

    def _layers(self, cutoff_layers: Layers) -> tuple[int, ...]:
        """Distinct layers, each checked to have a head: ascending if `ascending_layers`, else in
        the caller's order."""
        requested = as_integers(cutoff_layers, "cutoff_layers")
        try:
            ascending = self.model.check_layers(requested)
        except ValueError as error:
            raise ConfigurationError(str(error)) from error
        return tuple(ascending if self.ascending_layers else dict.fromkeys(requested))

    def _one_layer(self, cutoff_layers: Layers) -> int:
        layers = self._layers(cutoff_layers)
        if len(layers) != 1:
            raise ConfigurationError(
                f"score() reads one layer, got cutoff_layers={list(layers)}; "
                "use score_layers() for several"
            )
        return layers[0]
