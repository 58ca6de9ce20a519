"""Tiny, deterministic checkpoints generated in the tests: no test needs the network or a big model.

`make_tiny_encoder_reranker` writes a real `XLMRobertaForSequenceClassification` (one label, like
bge-reranker-base/large/v2-m3) with a real XLM-R fast tokenizer over a Unigram vocabulary trained
here.

The tokenizer files are chosen so that transformers 4.46 (which loads tokenizer.json as is) and
transformers 5 (which rebuilds an XLM-R tokenizer from the vocabulary, with a fixed pre-tokenizer,
post-processor and `unk_id=3`) end up with the same pipeline: the XLM-R special-token layout
`<s> <pad> </s> <unk>` at ids 0-3, no normalizer, the WhitespaceSplit + Metaspace pre-tokenizer and
the `<s> A </s></s> B </s>` template. The tests check that both versions tokenize pairs identically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from search_service.testing.tokenizer_files import added_tokens_decoder

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
MODEL_MAX_LENGTH = 512

CORPUS_EN = [
    "what is panda?",
    ("The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, "
    "is a bear species endemic to China."),
    "What is the capital of France? Paris is the capital of France.",
    "The population of China is over 1.4 billion people.",
    "Reranking scores every candidate passage against the query with a cross-encoder.",
    "Dense retrieval finds candidates quickly; a reranker orders them by relevance.",
    "Bears eat bamboo, fish, honey and berries in the forests and mountains.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Search services index documents, split them into chunks and store embeddings.",
    "hello hi thanks goodbye yes no maybe always never sometimes",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 and symbols , . ; : ! ? ( ) - ' \"",
]
CORPUS_ZH = [
    "熊猫是一种生活在中国的熊科动物。",
    "大熊猫主要吃竹子,也吃少量的肉。",
    "法国的首都是巴黎。中国的人口超过十四亿。",
    "重排序模型对查询和文档进行打分,分数越高越相关。",
    "检索增强生成系统先检索候选段落,再用重排器排序。",
    "北京上海广州深圳是中国的大城市。今天天气很好。",
]


def _train_tokenizer(vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        max_piece_length=8,
        show_progress=False,
    )
    corpus = CORPUS_EN + CORPUS_ZH
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    # The trainer's piece set is stable, but its scores are not: the last bits vary with parallel
    # sums, and single characters get filler scores in hash order. Rescore each piece by its
    # frequency in the corpus so the vocabulary file is the same on every run.
    trained = json.loads(tokenizer.to_str())["model"]["vocab"]
    words = ["▁" + word for text in corpus for word in text.split()]
    counts = {piece: sum(word.count(piece) for word in words) + 1 for piece, _ in trained}
    total = sum(counts.values())
    pieces = sorted(
        (
            (piece, round(math.log(count / total), 6))
            for piece, count in counts.items()
            if piece not in SPECIAL_TOKENS
        ),
        key=lambda item: (-item[1], item[0]),
    )
    special = [(piece, 0.0) for piece in SPECIAL_TOKENS]
    unk_id = SPECIAL_TOKENS.index("<unk>")
    tokenizer.model = models.Unigram(special + pieces, unk_id=unk_id, byte_fallback=False)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[
            ("<s>", tokenizer.token_to_id("<s>")),
            ("</s>", tokenizer.token_to_id("</s>")),
        ],
    )
    return tokenizer


def _tokenizer_config() -> dict:
    added = added_tokens_decoder(SPECIAL_TOKENS, lstrip=["<mask>"])
    return {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
        "added_tokens_decoder": added,
    }


def _randomize(model: torch.nn.Module, seed: int, initializer_range: float) -> None:
    """Spread weights wide and perturb LayerNorms and biases so pairs get clearly different scores.

    Done by hand with one generator, in parameter-name order, so the weights do not depend on how a
    transformers version initialises modules.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if "LayerNorm.weight" in name:
                param.copy_(1.0 + 0.3 * noise)
            elif name.endswith("bias"):
                param.copy_(0.2 * noise)
            else:
                param.copy_(initializer_range * noise)


def make_tiny_encoder_reranker(
    path: Path | str, *, seed: int = 0, vocab_size: int = 400, initializer_range: float = 0.3
) -> Path:
    """Write a tiny bge-reranker-like checkpoint (config, safetensors, tokenizer) to `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(_tokenizer_config(), indent=2, ensure_ascii=False)
    )
    special_map = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    (path / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))

    config = XLMRobertaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MODEL_MAX_LENGTH + 2,
        type_vocab_size=1,
        pad_token_id=tokenizer.token_to_id("<pad>"),
        bos_token_id=tokenizer.token_to_id("<s>"),
        eos_token_id=tokenizer.token_to_id("</s>"),
        num_labels=1,
        initializer_range=initializer_range,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    model = XLMRobertaForSequenceClassification(config)
    _randomize(model, seed, initializer_range)
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)
    return path


def install_in_hf_cache(
    checkpoint_dir: Path | str, hf_home: Path | str, repo_id: str, revision: str = "0" * 40
) -> Path:
    """Lay a checkpoint out as the Hugging Face hub cache does, so it loads by `repo_id` offline.

    `<hf_home>/hub/models--<org>--<name>/`: `blobs/<sha256>`, `snapshots/<revision>/<file>` symlinks
    to the blobs, and `refs/main` naming the revision. Returns the snapshot directory.
    """
    repo_dir = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    blobs, snapshot = repo_dir / "blobs", repo_dir / "snapshots" / revision
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for source in sorted(Path(checkpoint_dir).iterdir()):
        if not source.is_file():
            continue
        data = source.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / source.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot
