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

from collections.abc import Sequence
from typing import Any

import torch

from search_service.rerankers.checkpoint import Checkpoint, load_with_fast_tokenizer
from search_service.rerankers.families.decoder import LayeredDecoderReranker, LayeredFeature
from search_service.rerankers.families.minicpm_layerwise import (
    LayerwiseMiniCPMConfig,
    LayerwiseMiniCPMForScoring,
)

LayerwiseFeature = LayeredFeature  # the layers in the caller's order


class LayerwiseReranker(LayeredDecoderReranker):
    """Constructed as `LayeredDecoderReranker` (model, tokenizer, name, device, dtype, max_length,
    batch_size, query_max_length, cutoff_layers, prompt)."""

    family = "layerwise"
    options = ("prompt", "query_max_length", "cutoff_layers")
    model_options = ("attn_implementation",)

    @classmethod
    def _load_model(
        cls,
        checkpoint: Checkpoint,
        device: str,
        dtype: torch.dtype,
        *,
        attn_implementation: str | None = None,
    ) -> tuple[Any, LayerwiseMiniCPMForScoring]:
        """Our model code on the checkpoint's weights; `trust_remote_code` is never needed.

        `load`'s `cutoff_layers`: the layer `score` reads by default (an int or a one-item list;
        default: the last layer). The tokenizer is loaded from tokenizer.json as it is (as
        transformers 4.46 does), not rebuilt from its vocabulary.
        """
        config = LayerwiseMiniCPMConfig.from_checkpoint(checkpoint.config)
        model_options: dict[str, Any] = dict(checkpoint.hub_options, dtype=dtype)
        if attn_implementation is not None:
            model_options["attn_implementation"] = attn_implementation
        tokenizer, model = load_with_fast_tokenizer(
            checkpoint,
            lambda: LayerwiseMiniCPMForScoring.from_pretrained(
                checkpoint.name_or_path, config=config, **model_options
            ).to(device),
        )
        model.eval()
        return tokenizer, model

    @property
    def layers(self) -> range:
        """The layers that can score: start_layer..num_hidden_layers of the checkpoint."""
        return self.model.scoring_layers

    def collate(self, features: Sequence[LayeredFeature]) -> dict[str, torch.Tensor]:
        batch = super().collate(features)
        batch["layers"] = torch.tensor(features[0].layers, dtype=torch.long)  # stays on the CPU
        return batch

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits `[rows, layers]`, the columns in the batch's layer order."""
        layers = batch["layers"].tolist()
        scores = self.model(batch["input_ids"], batch["attention_mask"], layers)
        return torch.stack([scores[layer] for layer in layers], dim=1)
