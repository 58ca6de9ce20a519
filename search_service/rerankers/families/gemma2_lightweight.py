"""bge-reranker-v2.5-gemma2-lightweight as a transformers 5 model, without remote code.

The published checkpoint ships FlagEmbedding's `CostWiseGemmaForCausalLM` as remote code, which
imports `transformers.modeling_attn_mask_utils` (gone in transformers 5) and already fails on 4.57
(`Gemma2DecoderLayer` there needs `position_embeddings`). `LightweightGemma2ForScoring` is the
same network rebuilt from transformers' own `Gemma2DecoderLayer`, `Gemma2RMSNorm` and
`Gemma2RotaryEmbedding`; it loads the checkpoint's weights unchanged (`model.embed_tokens`,
`model.layers.N.*`, `model.norm`, `lm_head.I.linear_head` (one 1-output head per usable layer)) and
reads the config as it is (`model_type: cost_wise_gemma`, `start_layer`, `layer_sep`,
`layer_wise`), so `trust_remote_code` is never needed.

What the forward does, as FlagEmbedding 1.4.2 does on transformers 4.46:
- the usable score layers are `range(start_layer, num_hidden_layers + 1, layer_sep)`; the score of
  layer L is `head(final_norm(hidden state after L decoder layers))` at the last real token, with
  Gemma2's `final_logit_softcapping` (`tanh(x / c) * c`) applied to it;
- **head choice**: the requested layers are deduplicated and sorted, and the i-th of them gets head
  i, not the head trained for that layer number (`lm_head[(L - start_layer) // layer_sep]`). So
  `cutoff_layers=[28]` on the published model (start_layer 8) is scored by head 0. We match it;
- **token compression**: before decoder layer `idx` for each `idx` in `compress_layers` (not 0,
  and only below the deepest requested layer), the passage tokens are replaced by the means of
  consecutive groups of `compress_ratio` tokens (the last group may be shorter), the sequence
  becomes query, compressed passage, prompt, and positions restart at 0 (`compress_tokens`).
  Needs right padding and each row's query and prompt lengths;
- **attention softcapping**: FlagEmbedding loads this model with SDPA attention, and transformers
  4.46's SDPA path silently ignores Gemma2's `attn_logit_softcapping`; the published scores are
  therefore computed without it. `load_lightweight_gemma2` does the same by default
  (`attn_logit_softcapping=False`: the config's value is cleared and SDPA is used). With
  `attn_logit_softcapping=True`, the checkpoint's cap is applied (`tanh(s / c) * c` on the
  attention logits, as Gemma2 was trained) through eager attention, which transformers 5 requires
  for softcapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import Gemma2Config
from transformers.models.gemma2.modeling_gemma2 import (
    Gemma2DecoderLayer,
    Gemma2PreTrainedModel,
    Gemma2RMSNorm,
    Gemma2RotaryEmbedding,
)

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")  # the ones that take our 4D additive masks


@strict
class LightweightGemma2Config(Gemma2Config):
    """Gemma2's config plus FlagEmbedding's `CostWiseGemmaConfig` fields (same defaults)."""

    model_type = "cost_wise_gemma"
    start_layer: int = 28
    layer_sep: int = 28
    layer_wise: bool = False

    @property
    def score_layers(self) -> list[int]:
        """The layers that have a score head, in head order."""
        return list(range(self.start_layer, self.num_hidden_layers + 1, self.layer_sep))


class ScoreHead(nn.Module):
    """FlagEmbedding's `CostWiseHead`: a bias-free linear layer to one logit."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear_head = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear_head(hidden_states)


class LightweightGemma2Backbone(nn.Module):
    """The decoder stack under the `model.` prefix: embeddings, Gemma2 layers, final norm."""

    def __init__(self, config: LightweightGemma2Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(
            [Gemma2DecoderLayer(config, index) for index in range(config.num_hidden_layers)]
        )
        self.norm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Gemma2RotaryEmbedding(config)


def attention_masks(
    attention_mask: torch.Tensor, dtype: torch.dtype, sliding_window: int | None
) -> dict[str, torch.Tensor]:
    """Additive (batch, 1, seq, seq) masks per layer type: causal plus padding, and the same
    limited to the last `sliding_window` keys (transformers 4.46's Gemma2 masks)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    distance = positions[:, None] - positions[None, :]  # query minus key position
    blocked = (distance < 0)[None, None] | (attention_mask[:, None, None, :] == 0)
    minimum = torch.finfo(dtype).min
    zeros = torch.zeros(blocked.shape, dtype=dtype, device=attention_mask.device)
    masks = {"full_attention": zeros.masked_fill(blocked, minimum)}
    if sliding_window is not None:
        outside = blocked | (distance >= sliding_window)[None, None]
        masks["sliding_attention"] = zeros.masked_fill(outside, minimum)
    return masks


def compress_tokens(
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor,
    query_lengths: Sequence[int],
    prompt_lengths: Sequence[int],
    ratio: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FlagEmbedding's `token_compress` on right-padded rows laid out as query, passage, prompt:
    each group of `ratio` passage tokens becomes its mean. Returns new hidden states and mask."""
    lengths = attention_mask.sum(dim=1).tolist()
    rows = []
    for row, (length, query, prompt) in enumerate(
        zip(lengths, query_lengths, prompt_lengths, strict=True)
    ):
        states = hidden_states[row]
        passage = states[query : length - prompt]
        groups = -(-passage.shape[0] // ratio)
        padded = passage.new_zeros((groups * ratio, passage.shape[1]))
        padded[: passage.shape[0]] = passage
        counts = torch.ones(groups * ratio, dtype=passage.dtype, device=passage.device)
        counts[passage.shape[0] :] = 0
        weights = counts / counts.view(groups, ratio).sum(dim=1).repeat_interleave(ratio)
        means = (padded * weights[:, None]).view(groups, ratio, passage.shape[1]).sum(dim=1)
        rows.append(torch.cat([states[:query], means, states[length - prompt : length]]))
    width = max(len(row) for row in rows)
    compressed = hidden_states.new_zeros((len(rows), width, hidden_states.shape[-1]))
    mask = torch.zeros((len(rows), width), dtype=attention_mask.dtype, device=attention_mask.device)
    for index, row in enumerate(rows):
        compressed[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return compressed, mask


class LightweightGemma2ForScoring(Gemma2PreTrainedModel):
    """`CostWiseGemmaForCausalLM` (layer-wise) for scoring: one logit per row and requested layer."""

    config_class = LightweightGemma2Config
    config: LightweightGemma2Config
    _supports_sdpa = True  # safe: softcapping is cleared from the config when SDPA is used
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    _tied_weights_keys = None
    # The remote code ties a `lm_head.weight` to the embeddings; a checkpoint may carry it.
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [r"^lm_head\.weight$"]
    _can_record_outputs: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: LightweightGemma2Config):
        super().__init__(config)
        if not config.layer_wise:
            raise ValueError(
                "the lightweight reranker needs a layer-wise config (layer_wise: true)"
            )
        self.model = LightweightGemma2Backbone(config)
        self.lm_head = nn.ModuleList(ScoreHead(config.hidden_size) for _ in config.score_layers)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def check_layers(self, layers: Sequence[int]) -> list[int]:
        """The requested layers, deduplicated and sorted (the head order); raises on any layer
        that has no head."""
        usable = self.config.score_layers
        wrong = sorted({layer for layer in layers if layer not in usable})
        if wrong or not layers:
            raise ValueError(
                f"cutoff layers {wrong or list(layers)} are not score layers of this model; "
                f"choose from {usable[0]}..{usable[-1]} (step {self.config.layer_sep})"
            )
        return sorted(set(layers))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        query_lengths: Sequence[int],
        prompt_lengths: Sequence[int],
        cutoff_layers: Sequence[int],
        compress_layers: Sequence[int] = (),
        compress_ratio: int = 1,
        **_: Any,
    ) -> torch.Tensor:
        """Scores, (batch, len(layers)), in float32, for the sorted distinct `cutoff_layers`.

        Rows must be right-padded: `[bos] query sep passage sep prompt <pad>...`, with
        `query_lengths` counting `[bos] query sep` and `prompt_lengths` counting `sep prompt`.
        """
        if bool((attention_mask[:, :-1] < attention_mask[:, 1:]).any()):
            raise ValueError("the lightweight reranker needs right-padded inputs")
        layers = self.check_layers(cutoff_layers)
        compress = set(compress_layers) - {0} if compress_ratio > 1 else set()
        hidden = self.model.embed_tokens(input_ids)
        # As Gemma does: the scale is rounded to the model's dtype first.
        hidden = hidden * torch.tensor(self.config.hidden_size**0.5, dtype=hidden.dtype)
        context = self._context(hidden, attention_mask)
        scores = []
        for index, layer in enumerate(self.model.layers[: layers[-1]]):
            if index in layers:
                scores.append(self._score(len(scores), hidden, attention_mask))
            if index in compress:
                hidden, attention_mask = compress_tokens(
                    hidden, attention_mask, query_lengths, prompt_lengths, compress_ratio
                )
                context = self._context(hidden, attention_mask)
            hidden = layer(
                hidden,
                position_embeddings=context["position_embeddings"],
                attention_mask=context[layer.self_attn.layer_type],
            )
        scores.append(self._score(len(scores), hidden, attention_mask))
        return torch.stack(scores, dim=1)

    def _context(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        context: dict[str, Any] = attention_masks(
            attention_mask, hidden.dtype, self.config.sliding_window
        )
        context["position_embeddings"] = self.model.rotary_emb(hidden, positions)
        return context

    def _score(self, head: int, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        last = attention_mask.sum(dim=1) - 1
        states = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        logits = self.lm_head[head](self.model.norm(states))
        cap = self.config.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits.float().reshape(-1)


def attention_implementation(softcapping: bool, requested: str | None = None) -> str:
    """The attention to run: `requested`, else SDPA, or eager when softcapping (transformers 5
    softcaps only in eager, flex and some flash kernels; our masks suit SDPA and eager)."""
    implementation = requested or ("eager" if softcapping else "sdpa")
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation {implementation!r} is not supported by the lightweight reranker; "
            f"use one of {', '.join(ATTENTION_IMPLEMENTATIONS)}"
        )
    if softcapping and implementation != "eager":
        raise ValueError("attention softcapping needs attn_implementation='eager'")
    return implementation


def load_lightweight_gemma2(
    source: str,
    *,
    dtype: torch.dtype = torch.float32,
    attn_logit_softcapping: bool = False,
    attn_implementation: str | None = None,
    **hub_options: Any,
) -> tuple[LightweightGemma2ForScoring, dict[str, list[str]]]:
    """Load the published (or a compatible) checkpoint; returns the model in eval mode and
    transformers' loading info (`missing_keys`, `unexpected_keys`, ...).

    `attn_logit_softcapping=False` (default) matches FlagEmbedding (no attention softcapping,
    SDPA); `True` applies the config's cap with eager attention.
    """
    implementation = attention_implementation(attn_logit_softcapping, attn_implementation)
    config = LightweightGemma2Config.from_pretrained(source, **hub_options)
    if not attn_logit_softcapping:
        config.attn_logit_softcapping = None
    model, info = LightweightGemma2ForScoring.from_pretrained(
        source,
        config=config,
        dtype=dtype,
        attn_implementation=implementation,
        output_loading_info=True,
        **hub_options,
    )
    model.eval()
    return model, info
