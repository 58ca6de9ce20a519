"""MiniCPM with one relevance head per layer: the model of BAAI/bge-reranker-v2-minicpm-layerwise.

The published checkpoint ships remote code (FlagEmbedding's `modeling_minicpm_reranker.py`) that
does not import on transformers 5. This is our own version, built from transformers' Llama blocks,
that loads the published weights unchanged (same names and shapes, no `trust_remote_code`):

    model.embed_tokens, model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
    input_layernorm, post_attention_layernorm}, model.norm,
    lm_head.K.linear_head (head_multi: one [1, hidden] head per layer start_layer..num_layers)
    or lm_head.linear_head (one head for every layer)

MiniCPM is Llama plus two scalings, both checked against FlagEmbedding 1.4.2's code: embeddings
are multiplied by `scale_emb`, and each residual branch (attention, MLP) by
`scale_depth / sqrt(num_hidden_layers)`. The score for layer L is the head for L applied to the
final-norm'd hidden state after L decoder layers (L == num_hidden_layers: the model's output), at
the last real token. The 'simple' head (the published one) does not divide by
`hidden_size / dim_model_base`: FlagEmbedding only does that for its vocabulary-sized 'raw' and
'complex' heads, which are not rerankers and are refused here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import LlamaConfig, PreTrainedModel
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import (
    LlamaDecoderLayer,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
)

from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers.families.decoder_inputs import last_token_positions

ARCHITECTURE = "LayerWiseMiniCPMForCausalLM"


@strict
class LayerwiseMiniCPMConfig(LlamaConfig):
    """FlagEmbedding's `LayerWiseMiniCPMConfig` fields on top of transformers' `LlamaConfig`."""

    model_type = "minicpm"
    scale_emb: int | float = 1
    dim_model_base: int | float = 1
    scale_depth: int | float = 1
    start_layer: int = 8
    head_multi: bool = True
    head_type: str = "simple"

    @classmethod
    def from_checkpoint(cls, config: dict[str, Any]) -> LayerwiseMiniCPMConfig:
        """Parse a published config.json (transformers 4 layout: `rope_theta`, `rope_scaling`)."""
        values = dict(config)
        if values.pop("rope_scaling", None) is not None:
            raise ModelLoadError(
                "layerwise MiniCPM checkpoints with rope_scaling are not supported"
            )
        if values.get("head_type", "simple") != "simple":
            raise ModelLoadError(
                f"head_type {values['head_type']!r} is a language-model head, not a relevance "
                "head; the layerwise family reads the 'simple' head of bge-reranker-v2-minicpm-"
                "layerwise"
            )
        if values.get("pretraining_tp", 1) not in (None, 1):
            raise ModelLoadError("pretraining_tp > 1 is not supported (inference only)")
        return cls.from_dict(values)


class LayerWiseHead(nn.Module):
    """FlagEmbedding's head: one bias-free linear layer to a single logit."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear_head = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear_head(hidden_states)


class MiniCPMDecoderLayer(LlamaDecoderLayer):
    """A Llama decoder layer whose two residual branches are scaled by scale_depth/sqrt(layers)."""

    def __init__(self, config: LayerwiseMiniCPMConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.residual_scale = config.scale_depth / math.sqrt(config.num_hidden_layers)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        attended, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = hidden_states + attended * self.residual_scale
        transformed = self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states + transformed * self.residual_scale


class MiniCPMBackbone(nn.Module):
    """`model.*` of the checkpoint: embeddings, decoder layers, final norm (and RoPE tables)."""

    def __init__(self, config: LayerwiseMiniCPMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(
            [MiniCPMDecoderLayer(config, index) for index in range(config.num_hidden_layers)]
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)


class LayerwiseMiniCPMForScoring(PreTrainedModel):
    """Scores token sequences with the relevance heads of chosen layers (no LM head, no cache)."""

    config_class = LayerwiseMiniCPMConfig
    config: LayerwiseMiniCPMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules: ClassVar[list[str]] = ["MiniCPMDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # FlagEmbedding's class "ties" its ModuleList of heads to the embeddings when
    # tie_word_embeddings is left at its default; a checkpoint may carry that stray tensor.
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [r"^lm_head\.weight$"]

    def __init__(self, config: LayerwiseMiniCPMConfig):
        super().__init__(config)
        self.model = MiniCPMBackbone(config)
        if config.head_multi:
            heads = range(config.start_layer, config.num_hidden_layers + 1)
            self.lm_head: nn.Module = nn.ModuleList(
                LayerWiseHead(config.hidden_size) for _ in heads
            )
        else:
            self.lm_head = LayerWiseHead(config.hidden_size)
        self.post_init()

    @property
    def scoring_layers(self) -> range:
        """The layers that have a relevance head: start_layer..num_hidden_layers."""
        return range(self.config.start_layer, self.config.num_hidden_layers + 1)

    def check_layers(self, layers: Iterable[int]) -> list[int]:
        """Sorted, distinct layers; ConfigurationError for one without a head."""
        chosen = sorted({int(layer) for layer in layers})
        if not chosen:
            raise ConfigurationError("cutoff_layers must name at least one layer")
        valid = self.scoring_layers
        wrong = [layer for layer in chosen if layer not in valid]
        if wrong:
            raise ConfigurationError(
                f"cutoff layers {wrong} have no relevance head; this model scores layers "
                f"{valid.start} to {valid.stop - 1}"
            )
        return chosen

    def head(self, layer: int) -> nn.Module:
        if isinstance(self.lm_head, nn.ModuleList):
            return self.lm_head[layer - self.config.start_layer]
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Iterable[int] | None = None,
    ) -> dict[int, torch.Tensor]:
        """`{layer: float32 logits [batch]}` read at each row's last real token.

        Rows may be padded on either side; positions count from the start of the tensor, as in
        FlagEmbedding (RoPE is relative, so a row's scores do not depend on its padding). Only the
        layers up to the highest one asked for are run.
        """
        chosen = self.check_layers([self.config.num_hidden_layers] if layers is None else layers)
        hidden = self.model.embed_tokens(input_ids) * self.config.scale_emb
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        # The cache argument is `past_key_values` up to transformers 5.17 and `cache` later:
        # passed by position, as every transformers 5 release orders them.
        mask = create_causal_mask(self.config, hidden, attention_mask, None, position_ids)
        position_embeddings = self.model.rotary_emb(hidden, position_ids=position_ids)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        last = last_token_positions(attention_mask)
        scores: dict[int, torch.Tensor] = {}
        for index in range(chosen[-1] + 1):
            if index in chosen:
                pooled = self.model.norm(hidden[rows, last])
                scores[index] = self.head(index)(pooled).squeeze(-1).float()
            if index == chosen[-1]:
                break
            hidden = self.model.layers[index](
                hidden,
                attention_mask=mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
            )
        return scores
