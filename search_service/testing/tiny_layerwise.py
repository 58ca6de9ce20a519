"""A tiny bge-reranker-v2-minicpm-layerwise checkpoint, generated for the tests and benchmarks.

For the parity tests the model is saved by FlagEmbedding's own `LayerWiseMiniCPMForCausalLM` in the
reference env (`tests/reference/checkpoints.py`, `make_layerwise.py`), so the weight names and
shapes, the config (`model_type` `minicpm`, `start_layer`, `head_multi`, `head_type`, `scale_*`) and
the remote code files with their `auto_map` are laid out as in the published checkpoint. Weights are
random but wide, with perturbed norms and heads, so pairs and layers get clearly different scores.

The tokenizer is a Llama fast tokenizer (byte-fallback BPE, Metaspace pre-tokenizer, no
normalizer), trained here on a small English and Chinese corpus. transformers 5 rebuilds a
`LlamaTokenizer` from the vocabulary and merges with a fixed pipeline (byte fallback, `fuse_unk`,
Metaspace with `prepend_scheme="first"` when `legacy` is false, no normalizer), while 4.46 loads
tokenizer.json as it is; the file is written in exactly that pipeline, and `legacy: false` is set,
so both versions tokenize identically (checked by the tests).

`make_local_layerwise_reranker(path)` writes the same kind of checkpoint from our own model class
(`search_service.rerankers.families.minicpm_layerwise`) with transformers 5, for the tests that need
a model but not FlagEmbedding's: same tokenizer, config values, parameter names and weight-drawing
scheme, and a config.json in the published (transformers 4) layout. The slow
`test_weights_load_unchanged` checks that FlagEmbedding's class saves exactly these names."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from search_service.testing.tiny_encoder import CORPUS_EN, CORPUS_ZH
from search_service.testing.tokenizer_files import added_tokens_decoder

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
BYTE_TOKENS = [f"<0x{value:02X}>" for value in range(256)]
CORPUS_EXTRA = [
    "A: what is panda? B: hi",
    (
        "Given a query A and a passage B, determine whether the passage contains an answer to the "
        "query by providing a prediction of either 'Yes' or 'No'."
    ),
    "Does the passage answer the question? Answer Yes or No.",
]

AUTO_MAP = {
    "AutoConfig": "configuration_minicpm_reranker.LayerWiseMiniCPMConfig",
    "AutoModel": "modeling_minicpm_reranker.LayerWiseMiniCPMModel",
    "AutoModelForCausalLM": "modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM",
}
TINY_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # grouped-query attention, to cover repeat_kv
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "scale_emb": 12,
    "scale_depth": 1.4,
    "dim_model_base": 8,  # unused by the 'simple' head: a value != 1 proves it
    "start_layer": 1,  # heads for layers 1..4
    "head_multi": True,
    "head_type": "simple",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def train_llama_tokenizer(vocab_size: int = 700) -> Tokenizer:
    """Byte-fallback BPE in the layout of a converted Llama/MiniCPM SentencePiece tokenizer:
    specials at 0-3, the 256 byte tokens, then the learned pieces."""
    corpus = CORPUS_EN + CORPUS_ZH + CORPUS_EXTRA
    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    # Pieces never span a word boundary (as SentencePiece's split_by_whitespace): train on words.
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first", split=True
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(BYTE_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    trainer_tokenizer.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(trainer_tokenizer.to_str())["model"]
    learned = sorted(
        (token for token in trained["vocab"] if token not in SPECIAL_TOKENS),
        key=lambda token: trained["vocab"][token],
    )
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + BYTE_TOKENS + learned)}
    merges = [
        tuple(merge) if isinstance(merge, list) else tuple(merge.split(" "))
        for merge in trained["merges"]
    ]

    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first", split=False
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1),
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)]
    )
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer


def _tokenizer_config() -> dict:
    added = added_tokens_decoder(SPECIAL_TOKENS)
    return {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": TINY_CONFIG["max_position_embeddings"],
        "padding_side": "left",
        "added_tokens_decoder": added,
    }


def write_tokenizer(path: Path | str) -> Tokenizer:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = train_llama_tokenizer()
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(), indent=2))
    special_map = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
    }
    (path / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    return tokenizer


def make_local_layerwise_reranker(
    path: Path | str, *, seed: int = 0, initializer_range: float = 0.3
) -> Path:
    """The tiny checkpoint saved by our model class (no reference env needed)."""
    import torch

    from search_service.rerankers.families.minicpm_layerwise import (
        LayerwiseMiniCPMConfig,
        LayerwiseMiniCPMForScoring,
    )

    path = Path(path)
    tokenizer = write_tokenizer(path)
    values = {
        **TINY_CONFIG,
        "vocab_size": tokenizer.get_vocab_size(),
        "initializer_range": initializer_range,
    }
    model = LayerwiseMiniCPMForScoring(LayerwiseMiniCPMConfig.from_checkpoint(values))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # as tests/reference/make_layerwise.py draws them
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.3 * noise)
            elif name.startswith("lm_head."):
                param.copy_(1.0 * noise)
            else:
                param.copy_(initializer_range * noise)
    model.save_pretrained(str(path))
    saved = json.loads((path / "config.json").read_text())
    # The published layout: transformers 4's rope_theta, FlagEmbedding's class and remote code.
    rope = saved.pop("rope_parameters", None) or {}
    saved.update(
        architectures=["LayerWiseMiniCPMForCausalLM"],
        auto_map=AUTO_MAP,
        model_type="minicpm",
        rope_theta=rope.get("rope_theta", TINY_CONFIG["rope_theta"]),
        rope_scaling=None,
    )
    (path / "config.json").write_text(json.dumps(saved, indent=2))
    return path
