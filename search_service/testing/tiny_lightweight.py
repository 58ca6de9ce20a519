"""A tiny bge-reranker-v2.5-gemma2-lightweight checkpoint: `make_local_lightweight_reranker(path)`.

For the parity tests the model is saved by FlagEmbedding's own `CostWiseGemmaForCausalLM` in the
reference env (`tests/reference/checkpoints.py`, `make_lightweight.py`), so the parameter names and
shapes, the config (`model_type: cost_wise_gemma`, `layer_wise`, `start_layer`, `layer_sep`) and the
`auto_map` with the remote code are laid out as in the published checkpoint. It is small: hidden 32,
4 layers (sliding window 12 on the even ones), 4 heads of 8, 2 key/value heads, one score head per
layer 1-4, random weights spread wide so that pairs get clearly different scores.

`make_local_lightweight_reranker(path)` writes the same checkpoint from our own model class
(`search_service.rerankers.families.gemma2_lightweight`) with transformers 5, for the tests that
need a model but not FlagEmbedding's: same config values, parameter names and weight-drawing scheme.

The tokenizer is the tiny Gemma fast tokenizer of `search_service.testing.tiny_llm` (byte-fallback
BPE over a small English and Chinese corpus, built so transformers 4.46 and 5 tokenize alike).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from search_service.testing.tiny_llm import build_tokenizer, gemma_tokenizer_config

AUTO_MAP = {
    "AutoConfig": "gemma_config.CostWiseGemmaConfig",
    "AutoModel": "gemma_model.CostWiseGemmaModel",
    "AutoModelForCausalLM": "gemma_model.CostWiseGemmaForCausalLM",
}
NUM_LAYERS = 4
TINY_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": NUM_LAYERS,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "query_pre_attn_scalar": 16,  # not head_dim, so using the wrong scale shows
    "sliding_window": 12,  # shorter than most test inputs, so the sliding layers differ
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "hidden_activation": "gelu_pytorch_tanh",
    # Lower than the published 50.0 so that applying it or not clearly changes the scores.
    "attn_logit_softcapping": 10.0,
    "final_logit_softcapping": 30.0,
    "start_layer": 1,
    "layer_sep": 1,
    "layer_wise": True,
}


def write_tokenizer(path: Path) -> dict:
    """The tokenizer files; returns the config fields that come from the tokenizer."""
    tokenizer = build_tokenizer()
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        # Gemma pads left; FlagEmbedding's lightweight family pads right itself
        json.dumps(gemma_tokenizer_config(TINY_CONFIG["max_position_embeddings"]), indent=2, ensure_ascii=False)
    )
    special_map = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
    special_map["unk_token"] = "<unk>"
    (path / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    return {
        "vocab_size": tokenizer.get_vocab_size(),
        "pad_token_id": tokenizer.token_to_id("<pad>"),
        "eos_token_id": tokenizer.token_to_id("<eos>"),
        "bos_token_id": tokenizer.token_to_id("<bos>"),
    }


def make_local_lightweight_reranker(
    path: Path | str, *, seed: int = 0, initializer_range: float = 0.5
) -> Path:
    """The same tiny checkpoint saved by our model class (no reference env needed)."""
    from search_service.rerankers.families.gemma2_lightweight import (
        LightweightGemma2Config,
        LightweightGemma2ForScoring,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = LightweightGemma2Config(
        **TINY_CONFIG, **write_tokenizer(path), initializer_range=initializer_range
    )
    model = LightweightGemma2ForScoring(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # as tests/reference/make_lightweight.py draws them
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(0.3 * noise)
            elif name.startswith("lm_head."):
                param.copy_(1.0 * noise)
            else:
                param.copy_(initializer_range * noise)
    model.save_pretrained(str(path))
    saved = json.loads((path / "config.json").read_text())
    saved.update(architectures=["CostWiseGemmaForCausalLM"], auto_map=AUTO_MAP)
    (path / "config.json").write_text(json.dumps(saved, indent=2))
    return path
