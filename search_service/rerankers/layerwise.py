"""Layerwise rerankers (bge-reranker-v2-minicpm-layerwise): a relevance head on each upper layer.

Scores as FlagEmbedding 1.4.2's `LayerWiseFlagLLMReranker` does: the input is `<s> A: {query}
\\n B: {passage} \\n {prompt}` (built by `decoder_inputs.DecoderInputBuilder`, BOS always, which
documents the truncation), and the score of layer L is that layer's head at the last real token
(see `minicpm_layerwise.py` for the model). The default layer is the last one, FlagEmbedding's
default; a lower layer (the model card uses 28 of 40) is faster: the layers above it are not run.

    reranker.score(query, passages, cutoff_layers=28)              # one layer: list[float]
    reranker.score_layers(query, passages, cutoff_layers=[28, 40])  # {28: [...], 40: [...]}

Where we differ from FlagEmbedding on purpose: the requested dtype is honoured (it forces float16
on a GPU even when asked for float32); each layer gets its own head whatever the order of
`cutoff_layers` (it pairs the hidden states, collected in layer order, with the heads in the
caller's order, so an unsorted list mixes them up); a layer without a head is an error (it drops
it with a warning); errors propagate (it catches every RuntimeError while probing for a batch
size, and retries only out-of-memory ones here, in the base class). Rows are padded on the right,
so every pair's positions start at 0 whatever it is batched with (FlagEmbedding pads on the
tokenizer's side, left for MiniCPM, which RoPE makes equivalent up to rounding).
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
from search_service.rerankers.decoder_inputs import BosPolicy, DecoderInputBuilder
from search_service.rerankers.minicpm_layerwise import (
    LayerwiseMiniCPMConfig,
    LayerwiseMiniCPMForScoring,
)

log = logging.getLogger(__name__)

Layers = int | Iterable[int]


@dataclass(frozen=True, slots=True)
class LayerwiseFeature:
    """One pair's unpadded token ids and the layers (in the caller's order) to score it with."""

    input_ids: list[int]
    layers: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


class LayerwiseReranker(Reranker):
    family = "layerwise"
    options = frozenset({"cutoff_layers", "prompt", "query_max_length"})

    def __init__(
        self,
        *,
        model: LayerwiseMiniCPMForScoring,
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
        self.model = model
        self.tokenizer = tokenizer
        try:
            self.inputs = self._input_builder()
        except ValueError as error:
            raise ModelLoadError(f"reranker {name!r}: {error}") from error
        self.query_max_length = query_max_length
        self.prompt = prompt
        default = model.config.num_hidden_layers if cutoff_layers is None else cutoff_layers
        self.cutoff_layer = self._one_layer(default)
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
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        query_max_length: int | None = None,
        cutoff_layers: Layers | None = None,
        prompt: str | None = None,
        attn_implementation: str | None = None,
    ) -> LayerwiseReranker:
        """Our model code on the checkpoint's weights; `trust_remote_code` is never needed.

        `cutoff_layers`: the layer `score` reads by default (an int or a one-item list; default:
        the last layer). The tokenizer is loaded from tokenizer.json as it is (as transformers
        4.46 does), not rebuilt from its vocabulary.
        """
        from transformers import PreTrainedTokenizerFast

        device_name = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device_name)
        source = checkpoint.name_or_path
        config = LayerwiseMiniCPMConfig.from_checkpoint(checkpoint.config)
        model_options: dict[str, Any] = dict(checkpoint.hub_options, dtype=torch_dtype)
        if attn_implementation is not None:
            model_options["attn_implementation"] = attn_implementation
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(source, **checkpoint.hub_options)
            model = LayerwiseMiniCPMForScoring.from_pretrained(
                source, config=config, **model_options
            )
            model.to(device_name)
        except Exception as error:  # from_pretrained raises OSError, ValueError, hub errors...
            raise ModelLoadError(f"cannot load reranker {source!r}: {error}") from error
        model.eval()
        log.info("loaded layerwise reranker %s on %s (%s)", source, device_name, torch_dtype)
        return cls(
            model=model,
            tokenizer=tokenizer,
            name=source,
            device=device_name,
            dtype=torch_dtype,
            max_length=max_length,
            batch_size=batch_size,
            query_max_length=query_max_length,
            cutoff_layers=cutoff_layers,
            prompt=prompt,
        )

    @property
    def max_supported_length(self) -> int | None:
        # The passage budget; the prompt and separators come on top of it (as in FlagEmbedding).
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def layers(self) -> range:
        """The layers that can score: start_layer..num_hidden_layers of the checkpoint."""
        return self.model.scoring_layers

    # -- public API ------------------------------------------------------------------------------

    def score_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        cutoff_layers: Layers | None = None,
        prompt: str | None = None,
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
            prompt=prompt,
            **options,
        )

    def score_layers(
        self, query: str, passages: Sequence[str], cutoff_layers: Layers, **options: Any
    ) -> dict[int, list[float]]:
        """`{layer: one score per passage}` for several layers, from one forward pass per batch,
        keyed in the order the layers were given (repeats dropped); options as `score`."""
        pairs = [(query, passage) for passage in passages]
        return self.score_pairs_layers(pairs, cutoff_layers, **options)

    def score_pairs_layers(
        self,
        pairs: Sequence[Sequence[str]],
        cutoff_layers: Layers,
        normalize: bool = False,
        batch_size: int | None = None,
        max_length: int | None = None,
        prompt: str | None = None,
        query_max_length: int | None = None,
    ) -> dict[int, list[float]]:
        layers = self._layers(cutoff_layers)
        if not pairs:
            return {layer: [] for layer in layers}
        checked = [self._check_pair(pair) for pair in pairs]
        length = self.max_length if max_length is None else self._check_max_length(max_length)
        features = self.tokenize(
            checked, length, cutoff_layers=layers, prompt=prompt, query_max_length=query_max_length
        )
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
        prompt: str | None = None,
        query_max_length: int | None = None,
    ) -> list[LayerwiseFeature]:
        """LayerWiseFlagLLMReranker's inputs, tagged with the layers to read (default: the
        instance's layer); `prompt` and `query_max_length` default to the instance's."""
        layers = (self.cutoff_layer,) if cutoff_layers is None else self._layers(cutoff_layers)
        built = self.inputs.build(
            pairs,
            max_length,
            prompt=self.prompt if prompt is None else prompt,
            query_max_length=query_max_length or self.query_max_length,
        )
        return [LayerwiseFeature(feature.input_ids, layers) for feature in built]

    def collate(self, features: Sequence[LayerwiseFeature]) -> dict[str, torch.Tensor]:
        layers = {feature.layers for feature in features}
        if len(layers) != 1:
            raise ValueError("a batch must be scored with one set of layers")
        batch = {key: value.to(self.device) for key, value in self.inputs.collate(features).items()}
        batch["layers"] = torch.tensor(layers.pop(), dtype=torch.long)  # stays on the CPU
        return batch

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits `[rows, layers]`, the columns in the batch's layer order."""
        layers = batch["layers"].tolist()
        scores = self.model(batch["input_ids"], batch["attention_mask"], layers)
        return torch.stack([scores[layer] for layer in layers], dim=1)

    def postprocess(self, logits: torch.Tensor) -> list[Any]:
        """One float per row for one layer (what `score` needs), else one list per row."""
        values = logits.float().cpu()
        return values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()

    # -- helpers ---------------------------------------------------------------------------------

    def _input_builder(self) -> DecoderInputBuilder:
        return DecoderInputBuilder(
            self.tokenizer, bos_policy=BosPolicy.ALWAYS, padding_side="right"
        )

    def __getstate__(self) -> dict[str, Any]:
        # The input builder holds a lock (its prompt cache): rebuild it in the copy.
        state = super().__getstate__()
        del state["inputs"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.inputs = self._input_builder()

    def _layers(self, cutoff_layers: Layers) -> tuple[int, ...]:
        """Distinct layers in the caller's order, each checked to have a head."""
        try:
            single = not isinstance(cutoff_layers, Iterable)
            items = [cutoff_layers] if single else list(cutoff_layers)  # type: ignore[arg-type]
            if any(isinstance(layer, bool) for layer in items):
                raise TypeError("a boolean is not a layer")
            requested = [operator.index(layer) for layer in items]
        except TypeError as error:
            raise ConfigurationError(
                f"cutoff_layers must be layer numbers, got {cutoff_layers!r}"
            ) from error
        self.model.check_layers(requested)
        return tuple(dict.fromkeys(requested))

    def _one_layer(self, cutoff_layers: Layers) -> int:
        layers = self._layers(cutoff_layers)
        if len(layers) != 1:
            raise ConfigurationError(
                f"score() reads one layer, got cutoff_layers={list(layers)}; "
                "use score_layers() for several"
            )
        return layers[0]
