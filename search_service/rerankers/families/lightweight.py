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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from search_service.errors import ConfigurationError, InvalidRequestError, ModelLoadError
from search_service.rerankers.base import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, bfloat16_on_gpu
from search_service.rerankers.checkpoint import Checkpoint, load_with_fast_tokenizer
from search_service.rerankers.families.decoder import (
    LayeredDecoderReranker,
    LayeredFeature,
    Layers,
    as_integers,
)
from search_service.rerankers.families.gemma2_lightweight import (
    LightweightGemma2ForScoring,
    attention_implementation,
    load_lightweight_gemma2,
)

DEFAULT_PROMPT = "Predict whether passage B contains an answer to query A."
DEFAULT_COMPRESS_LAYERS = (8,)


@dataclass(frozen=True, slots=True)
class Compression:
    ratio: int = 1
    layers: tuple[int, ...] = DEFAULT_COMPRESS_LAYERS


@dataclass(frozen=True, slots=True)
class LightweightFeature(LayeredFeature):
    """One pair's inputs and how to score it: the layers (head order) and the compression."""

    compression: Compression


class LightweightReranker(LayeredDecoderReranker):
    family = "lightweight"
    options = ("prompt", "query_max_length", "cutoff_layers", "compress_ratio", "compress_layers")
    model_options = ("attn_logit_softcapping", "attn_implementation")
    default_prompt = DEFAULT_PROMPT
    ascending_layers = True

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
        super().__init__(
            model=model,
            tokenizer=tokenizer,
            name=name,
            device=device,
            dtype=dtype,
            max_length=max_length,
            batch_size=batch_size,
            query_max_length=query_max_length,
            cutoff_layers=cutoff_layers,
            prompt=prompt,
        )
        self.compression = self._compression(compress_ratio, compress_layers, Compression())

    @classmethod
    def _load_model(
        cls,
        checkpoint: Checkpoint,
        device: str,
        dtype: torch.dtype,
        *,
        attn_logit_softcapping: bool = False,
        attn_implementation: str | None = None,
    ) -> tuple[Any, LightweightGemma2ForScoring]:
        """Our model code on the checkpoint's weights; `trust_remote_code` is never needed.

        `attn_logit_softcapping`: False (default) scores as FlagEmbedding does, without the
        attention softcapping; True applies it (eager attention). `load`'s other options:
        max_length, batch_size and the per-call `options` (their defaults).
        The tokenizer is loaded from tokenizer.json as it is, as transformers 4.46 does.
        """
        source = checkpoint.name_or_path
        try:
            implementation = attention_implementation(attn_logit_softcapping, attn_implementation)
        except ValueError as error:
            raise ConfigurationError(f"reranker {source!r}: {error}") from error

        def load_model() -> tuple[LightweightGemma2ForScoring, dict[str, list[str]]]:
            model, info = load_lightweight_gemma2(
                source,
                dtype=dtype,
                attn_logit_softcapping=attn_logit_softcapping,
                attn_implementation=implementation,
                **checkpoint.hub_options,
            )
            return model.to(device), info

        tokenizer, (model, info) = load_with_fast_tokenizer(checkpoint, load_model)
        if info["missing_keys"]:
            missing = ", ".join(sorted(info["missing_keys"]))
            raise ModelLoadError(f"reranker {source!r} lacks weights: {missing}")
        return tokenizer, model

    @classmethod
    def default_dtype(cls, device: str) -> str | None:
        # Gemma2's activations overflow float16: bfloat16 where the GPU has it.
        return bfloat16_on_gpu(device)

    @property
    def layers(self) -> list[int]:
        """The layers that have a score head (what `cutoff_layers` may name)."""
        return list(self.model.config.score_layers)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """As `LayeredDecoderReranker.check_options`; no `compress_layers` above the last layer."""
        checked = super().check_options(options)
        deepest = max(self.layers)
        wrong = [layer for layer in checked.get("compress_layers", ()) if layer > deepest]
        if wrong:
            raise InvalidRequestError(f"compress_layers: {wrong} beyond the model's {deepest} layers")
        return checked

    # -- stages ----------------------------------------------------------------------------------

    def tokenize(  # type: ignore[override]
        self,
        pairs: Sequence[tuple[str, str]],
        max_length: int,
        *,
        compress_ratio: int | None = None,
        compress_layers: Iterable[int] | None = None,
        **options: Any,
    ) -> list[LightweightFeature]:
        """LightWeightFlagLLMReranker's inputs, tagged with the layers and the compression
        (defaults: the instance's); `options`: cutoff_layers, prompt, query_max_length."""
        compression = self._compression(compress_ratio, compress_layers, self.compression)
        return [
            LightweightFeature(feature.inputs, feature.layers, compression)
            for feature in super().tokenize(pairs, max_length, **options)
        ]

    def collate(self, features: Sequence[LightweightFeature]) -> dict[str, Any]:
        batch = super().collate(features)
        first = features[0]
        batch.update(
            query_lengths=[feature.inputs.query_length for feature in features],
            prompt_lengths=[feature.inputs.prompt_length for feature in features],
            cutoff_layers=first.layers,
            compress_layers=first.compression.layers,
            compress_ratio=first.compression.ratio,
        )
        return batch

    def batch_key(self, feature: LightweightFeature) -> tuple[Any, ...]:
        return (feature.layers, feature.compression)  # one of each per batch (see `collate`)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits `[rows, layers]`, the columns in ascending layer order."""
        return self.model(**batch)

    @staticmethod
    def _compression(
        ratio: int | None, layers: Iterable[int] | None, default: Compression
    ) -> Compression:
        ratio = default.ratio if ratio is None else ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
            raise ConfigurationError(f"compress_ratio must be an integer >= 1, got {ratio!r}")
        chosen = default.layers if layers is None else tuple(as_integers(layers, "compress_layers"))
        return Compression(ratio, tuple(sorted(set(chosen))))
