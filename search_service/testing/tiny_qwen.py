"""Tiny, deterministic Qwen checkpoints: `make_tiny_qwen3_reranker(path)` (a Qwen3-Reranker-like
`Qwen3ForCausalLM`) and `make_tiny_qwen2_reranker(path)` (an mxbai-rerank-v2-like
`Qwen2ForCausalLM`).

Real transformers model classes (hidden 32, 2 layers, 4 heads of 8, 2 key/value heads, tied
embeddings, 8,192 positions) with wide random weights (`initializer_range` 0.5, RMSNorm scales
around 1) so that pairs get clearly different scores, and a real Qwen2 byte-level BPE tokenizer
learned here from a small English and Chinese corpus.

transformers 5 REBUILDS a `Qwen2Tokenizer` from the vocabulary and merges of tokenizer.json, with
a fixed pipeline: the `NFC` normalizer, the pre-tokenizer `Split(PRETOKENIZE_REGEX, "isolated")`
then `ByteLevel(add_prefix_space=False, use_regex=False)`, and the `ByteLevel` decoder; transformers
4.x loads tokenizer.json as it is. The tokenizer written here has exactly that pipeline (as the
published Qwen tokenizers do), so both tokenize alike. The layout is Qwen's: the 256 byte-level
characters, then merges, then the added tokens at the end: `<|endoftext|>` (pad, also unk),
`<|im_start|>`, `<|im_end|>` (eos) as special tokens and `<think>`, `</think>` as plain added ones.
`yes`, `no`, `1` and `0` are single tokens (the answer tokens of Qwen3-Reranker and
mxbai-rerank-v2). The merges are learned by a small deterministic BPE loop (ties broken by the
pair's text), not by the `tokenizers` trainer, whose ids depend on hash order. Padding is on the
left, as both rerankers' reference code sets it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from search_service.testing.tokenizer_files import learn_merges

MAX_POSITION_EMBEDDINGS = 8192
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PAD = "<|endoftext|>"
SPECIAL_TOKENS = [PAD, "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]
# Words that must become single tokens: the scores are read at them.
ANSWER_TOKENS = ["yes", "no", "1", "0"]

CORPUS = [
    "what is panda?",
    (
        "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, "
        "is a bear species endemic to China."
    ),
    "What is the capital of France? Paris is the capital of France.",
    "The population of China is over 1.4 billion people.",
    "Reranking scores every candidate passage against the query with a language model.",
    "Bears eat bamboo, fish, honey and berries in the forests and mountains.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Search services index documents, split them into chunks and store embeddings.",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 and symbols , . ; : ! ? ( ) - ' \"",
    # Qwen3-Reranker's template and default instruction
    (
        "system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".\nuser\n'
    ),
    "<Instruct>: Given a web search query, retrieve relevant passages that answer the query",
    "\n<Query>: what is panda?\n<Document>: yes no yes no\nassistant\n\n\n\n",
    # mxbai-rerank-v2's template and task prompt
    "system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\nuser\n",
    "instruction: \nquery: \ndocument: \n",
    (
        "You are a search relevance expert who evaluates how well documents match search queries. "
        "For each query-document pair, carefully analyze the semantic relationship between them, "
        "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
        "Relevance:"
    ),
    "熊猫是一种生活在中国的熊科动物。",
    "大熊猫主要吃竹子,也吃少量的肉。",
    "法国的首都是巴黎。中国的人口超过十四亿。",
    "重排序模型对查询和文档进行打分,分数越高越相关。",
    "检索增强生成系统先检索候选段落,再用重排器排序。",
]


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _byte_alphabet() -> list[str]:
    """The 256 byte-level characters in GPT-2's byte order (printable bytes first, as Qwen's)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in printable] + [
        chars[byte] for byte in range(256) if byte not in printable
    ]


def _learn_bpe(num_merges: int) -> list[tuple[str, str]]:
    splitter = _pre_tokenizer()
    normalizer = normalizers.NFC()
    counts: Counter[str] = Counter()
    for text in CORPUS:
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word] += 1
    for word in ANSWER_TOKENS:
        counts[word] += 50
    return learn_merges(counts, num_merges)


def build_qwen_tokenizer(num_merges: int = 400) -> Tokenizer:
    """The tiny Qwen2 byte-level BPE tokenizer (see the module docstring)."""
    merges = _learn_bpe(num_merges)
    vocab: dict[str, int] = {}
    for piece in _byte_alphabet() + [left + right for left, right in merges]:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    tokenizer.add_tokens(
        [AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS]
    )
    for word in ANSWER_TOKENS + SPECIAL_TOKENS + THINK_TOKENS:
        assert len(tokenizer.encode(word, add_special_tokens=False).ids) == 1, word
    return tokenizer


def qwen_tokenizer_config(tokenizer: Tokenizer) -> dict:
    """tokenizer_config.json as the published Qwen3 checkpoints have it, padding on the left."""
    added = {}
    for token in SPECIAL_TOKENS + THINK_TOKENS:
        added[str(tokenizer.token_to_id(token))] = {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": token in SPECIAL_TOKENS,
        }
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": PAD,
        "unk_token": None,
        "errors": "replace",
        "padding_side": "left",
        "model_max_length": MAX_POSITION_EMBEDDINGS,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "added_tokens_decoder": added,
    }


def _randomize(model: torch.nn.Module, seed: int, initializer_range: float) -> None:
    """Wide random weights and RMSNorm scales around 1, drawn by hand with one generator in
    parameter-name order, independent of transformers' initialisation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name:
                param.copy_(1.0 + 0.3 * noise)
            else:
                param.copy_(initializer_range * noise)


def _write_checkpoint(path: Path, config_class, model_class, seed: int, initializer_range: float):
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen_tokenizer()
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(qwen_tokenizer_config(tokenizer), indent=2, ensure_ascii=False)
    )
    special_map = {"eos_token": "<|im_end|>", "pad_token": PAD}
    (path / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    config = config_class(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        hidden_act="silu",
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        rms_norm_eps=1e-6,
        pad_token_id=tokenizer.token_to_id(PAD),
        eos_token_id=tokenizer.token_to_id("<|im_end|>"),
        bos_token_id=None,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        architectures=[model_class.__name__],
    )
    model = model_class(config)
    _randomize(model, seed, initializer_range)
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)
    return path


def make_tiny_qwen3_reranker(
    path: Path | str, *, seed: int = 0, initializer_range: float = 0.5
) -> Path:
    """Write a tiny Qwen3-Reranker-like checkpoint (Qwen3ForCausalLM) to `path`. The family is
    told by the name: put `Qwen3-Reranker` in the directory name, or choose it by `#family=`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return _write_checkpoint(Path(path), Qwen3Config, Qwen3ForCausalLM, seed, initializer_range)


def make_tiny_qwen2_reranker(
    path: Path | str, *, seed: int = 0, initializer_range: float = 0.5
) -> Path:
    """Write a tiny mxbai-rerank-v2-like checkpoint (Qwen2ForCausalLM) to `path`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return _write_checkpoint(Path(path), Qwen2Config, Qwen2ForCausalLM, seed, initializer_range)
