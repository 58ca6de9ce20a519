"""A tiny, deterministic bge-reranker-v2-gemma-like checkpoint: `make_tiny_llm_reranker(path)`.

A real `GemmaForCausalLM` (hidden 32, 2 layers, 4 heads of 8, 2 key/value heads) with a real Gemma
fast tokenizer over a byte-fallback BPE vocabulary learned here from a small English and Chinese
corpus.

transformers 4.46 loads tokenizer.json as is; transformers 5 REBUILDS a `GemmaTokenizer` from its
vocabulary and merges, with a fixed pipeline: `BPE(fuse_unk=True, byte_fallback=True)`, the
normalizer `Replace(" ", "▁")`, the pre-tokenizer `Split(" ", "merged_with_previous")` and the
`Replace/ByteFallback/Fuse` decoder. The tokenizer written here has exactly that pipeline, so both
versions tokenize alike (tests/rerankers/test_llm_family.py checks it against transformers 4.46).
The vocabulary has Gemma's layout: `<pad> <eos> <bos> <unk> <mask>` at ids 0-4, then the 256
`<0xNN>` byte pieces (so emoji and unseen characters fall back to bytes, never to `<unk>`), then
characters and merges. The merges are learned by a small deterministic BPE loop (ties broken by
the pair's text), not by the `tokenizers` trainer, whose ids depend on hash order.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from transformers import GemmaConfig, GemmaForCausalLM

from search_service.testing.tokenizer_files import added_tokens_decoder, learn_merges

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
MAX_POSITION_EMBEDDINGS = 8192

CORPUS = [
    "what is panda?",
    (
        "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, "
        "is a bear species endemic to China."
    ),
    "What is the capital of France? Paris is the capital of France.",
    "The population of China is over 1.4 billion people.",
    "Reranking scores every candidate passage against the query with a language model.",
    (
        "Given a query A and a passage B, determine whether the passage contains an answer to the "
        "query by providing a prediction of either 'Yes' or 'No'."
    ),
    "A: what is the answer? B: the passage says Yes. Yes No Yes No",
    "Bears eat bamboo, fish, honey and berries in the forests and mountains.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Search services index documents, split them into chunks and store embeddings.",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 and symbols , . ; : ! ? ( ) - ' \"",
    "熊猫是一种生活在中国的熊科动物。",
    "大熊猫主要吃竹子,也吃少量的肉。",
    "法国的首都是巴黎。中国的人口超过十四亿。",
    "重排序模型对查询和文档进行打分,分数越高越相关。",
    "检索增强生成系统先检索候选段落,再用重排器排序。",
]
# Words that must become single pieces: the score is read at the "Yes" token.
REQUIRED_WORDS = ["Yes", "No", "A:", "B:"]


def _words(text: str) -> list[str]:
    """Split as Gemma's sentencepiece does: pieces start at each "▁" (space), none prepended."""
    normalized = text.replace(" ", "▁")
    words, start = [], 0
    for index in range(1, len(normalized)):
        if normalized[index] == "▁":
            words.append(normalized[start:index])
            start = index
    words.append(normalized[start:])
    return [word for word in words if word]


def _learn_bpe(num_merges: int) -> tuple[list[str], list[tuple[str, str]]]:
    counts = Counter(word for text in CORPUS for word in _words(text))
    for word in REQUIRED_WORDS:
        counts[word] += 50
    alphabet = sorted({char for word in counts for char in word} | {"\n"})
    return alphabet, learn_merges(counts, num_merges)


def build_tokenizer(num_merges: int = 300) -> Tokenizer:
    alphabet, merges = _learn_bpe(num_merges)
    pieces = SPECIAL_TOKENS + [f"<0x{byte:02X}>" for byte in range(256)] + alphabet
    pieces += [left + right for left, right in merges]
    vocab: dict[str, int] = {}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token="<unk>",
            fuse_unk=True,
            byte_fallback=True,
            dropout=None,
        )
    )
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    bos = vocab["<bos>"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos>:1 $B:1", special_tokens=[("<bos>", bos)]
    )
    for word in REQUIRED_WORDS:
        assert len(tokenizer.encode(word, add_special_tokens=False).ids) == 1, word
    return tokenizer


def gemma_tokenizer_config(model_max_length: int = MAX_POSITION_EMBEDDINGS) -> dict:
    added = added_tokens_decoder(SPECIAL_TOKENS)
    return {
        "tokenizer_class": "GemmaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "padding_side": "left",
        "model_max_length": MAX_POSITION_EMBEDDINGS,
        "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False,
        "added_tokens_decoder": added,
    }


def _randomize(model: torch.nn.Module, seed: int, initializer_range: float) -> None:
    """Wide random weights and perturbed RMSNorms (Gemma scales by 1 + weight), drawn by hand
    with one generator in parameter-name order, independent of transformers' initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name:
                param.copy_(0.3 * noise)
            else:
                param.copy_(initializer_range * noise)


def make_tiny_llm_reranker(
    path: Path | str, *, seed: int = 0, initializer_range: float = 0.5
) -> Path:
    """Write a tiny FlagLLMReranker checkpoint (config, safetensors, tokenizer) to `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(gemma_tokenizer_config(), indent=2, ensure_ascii=False)
    )
    special_map = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
    special_map["unk_token"] = "<unk>"
    (path / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))

    config = GemmaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        rms_norm_eps=1e-6,
        pad_token_id=tokenizer.token_to_id("<pad>"),
        eos_token_id=tokenizer.token_to_id("<eos>"),
        bos_token_id=tokenizer.token_to_id("<bos>"),
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        architectures=["GemmaForCausalLM"],
    )
    model = GemmaForCausalLM(config)
    _randomize(model, seed, initializer_range)
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)
    return path
