"""A tiny bge-m3-like embedder: XLM-R encoder, CLS pooling, plus generated `sparse_linear.pt`.

The layout is bge-m3's: a sentence-transformers directory (modules.json, CLS pooling, Normalize)
whose root is a plain Hugging Face `XLMRobertaModel` with the XLM-R tokenizer of
`tiny_models`, and next to it the heads FlagEmbedding's `BGEM3FlagModel` loads:
`sparse_linear.pt` (`Linear(hidden, 1)`) and `colbert_linear.pt` (`Linear(hidden, hidden)`;
FlagEmbedding loads the sparse head only when both are present). Random but seeded weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import XLMRobertaConfig, XLMRobertaModel

from search_service.testing.tiny_encoder import (
    MODEL_MAX_LENGTH,
    _randomize,
    _tokenizer_config,
    _train_tokenizer,
)

HIDDEN = 32


def make_tiny_m3(path: Path | str, *, seed: int = 0, vocab_size: int = 400, with_sparse_head: bool = True) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(), indent=2, ensure_ascii=False))
    config = XLMRobertaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MODEL_MAX_LENGTH + 2,
        type_vocab_size=1,
        pad_token_id=tokenizer.token_to_id("<pad>"),
        bos_token_id=tokenizer.token_to_id("<s>"),
        eos_token_id=tokenizer.token_to_id("</s>"),
        architectures=["XLMRobertaModel"],
    )
    model = XLMRobertaModel(config)
    _randomize(model, seed, 0.3)
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)

    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MODEL_MAX_LENGTH, "do_lower_case": False}))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": True}))
    (path / "2_Normalize").mkdir(exist_ok=True)

    if with_sparse_head:
        generator = torch.Generator().manual_seed(seed + 1)
        sparse = torch.nn.Linear(HIDDEN, 1)
        colbert = torch.nn.Linear(HIDDEN, HIDDEN)
        with torch.no_grad():
            sparse.weight.copy_(0.3 * torch.randn(sparse.weight.shape, generator=generator))
            sparse.bias.fill_(0.2)  # about half the tokens get a positive weight
            colbert.weight.copy_(0.1 * torch.randn(colbert.weight.shape, generator=generator))
            colbert.bias.zero_()
        torch.save(sparse.state_dict(), path / "sparse_linear.pt")
        torch.save(colbert.state_dict(), path / "colbert_linear.pt")
    return path
