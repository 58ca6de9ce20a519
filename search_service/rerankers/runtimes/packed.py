"""Unpadded ("packed") forward passes for XLM-R/RoBERTa cross-encoders on a CPU.

A padded batch spends the same arithmetic on padding as on tokens: with 50 candidates of 40-400
tokens, sorted by length and cut into 1024-token batches, about 15 % of an fp32 forward was
padding. Here a batch's pairs are laid end to end in one row instead, with position ids restarting
at each pair (computed as XLM-R computes them, `padding_idx + cumsum(ids != pad)`) and attention
kept inside each pair: the matrix products (most of the FLOPs) see exactly the real tokens, as one
tall matrix. Attention runs per pair (`scaled_dot_product_attention` on each pair's slice, no mask),
through an attention function registered with transformers' `AttentionInterface`; given no
`cu_seq_lens_q` it is plain SDPA, so the same loaded model still runs padded batches. The
classification head reads each pair's first token, as `XLMRobertaClassificationHead` does.

Only on a CPU: on a GPU the per-pair attention calls would be hundreds of small kernel launches,
and big padded batches already keep it busy. Scores equal the padded forward's to float rounding
(the products are blocked differently): tests/rerankers/test_packed_forward.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ATTENTION = "search_service_packed_sdpa"
MODEL_TYPES = {"xlm-roberta", "roberta"}


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention within each packed pair (`cu_seq_lens_q`: pair boundaries); otherwise SDPA."""
    if cu_seq_lens_q is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    bounds = cu_seq_lens_q.tolist()
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], scale=scaling
        )
        for start, end in itertools.pairwise(bounds)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make `ATTENTION` a name transformers models accept (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, packed_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def enable(model: torch.nn.Module, device: str) -> bool:
    """Switch `model` to the packed attention where it fits; True if it did."""
    config = model.config
    fits = (
        str(device).startswith("cpu")
        and getattr(config, "model_type", None) in MODEL_TYPES
        and getattr(config, "_attn_implementation", None) == "sdpa"
        and hasattr(model, "roberta")
        and hasattr(model, "classifier")
    )
    if fits:
        register()
        model.set_attn_implementation(ATTENTION)
    return fits


def collate(features: Sequence[Any], pad_id: int) -> dict[str, torch.Tensor]:
    """One row of every pair's tokens, their positions, and the pair boundaries."""
    ids = np.concatenate([np.asarray(feature.input_ids, dtype=np.int64) for feature in features])
    types = np.concatenate(
        [np.asarray(feature.token_type_ids, dtype=np.int64) for feature in features]
    )
    bounds = np.zeros(len(features) + 1, dtype=np.int64)
    np.cumsum([len(feature) for feature in features], out=bounds[1:])
    real = (ids != pad_id).astype(np.int64)
    counts = np.cumsum(real)
    # Each pair's running count of real tokens, restarted at its first token.
    before = np.concatenate([[0], counts[bounds[1:-1] - 1]])
    counts -= np.repeat(before, np.diff(bounds))
    positions = counts * real + pad_id
    return {
        "input_ids": torch.from_numpy(ids).unsqueeze(0),
        "token_type_ids": torch.from_numpy(types).unsqueeze(0),
        "position_ids": torch.from_numpy(positions).unsqueeze(0),
        "cu_seq_lens_q": torch.from_numpy(bounds),
    }


def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One logit row per packed pair, as the padded model's `logits`."""
    bounds = batch["cu_seq_lens_q"]
    hidden = model.roberta(
        input_ids=batch["input_ids"],
        token_type_ids=batch["token_type_ids"],
        position_ids=batch["position_ids"],
        cu_seq_lens_q=bounds,
    ).last_hidden_state
    first_tokens = hidden[0, bounds[:-1]].unsqueeze(1)  # the head reads token 0 of each pair
    return model.classifier(first_tokens)
