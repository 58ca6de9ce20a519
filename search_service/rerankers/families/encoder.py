"""Cross-encoder rerankers (bge-reranker-base/large/v2-m3): a one-label classification head.

Inputs are built exactly as FlagEmbedding 1.4.2's `FlagReranker` builds them: the query and the
passage are tokenized separately without special tokens (the query cut to `query_max_length`, by
default 3/4 of `max_length`; the passage cut to `max_length`), then joined with the special
tokens and the passage cut again so the pair fits `max_length`
(`prepare_for_model(..., truncation='only_second')`).
transformers 5 dropped `prepare_for_model` from XLM-R's tokenizer, so the pair is built on the
`tokenizers` backend: encode, truncate the `Encoding`s, `post_process`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from search_service.errors import ModelLoadError
from search_service.rerankers.base import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, Reranker
from search_service.rerankers.checkpoint import Checkpoint
from search_service.rerankers.families.pair_template import PairTemplate
from search_service.rerankers.runtimes import packed
from search_service.rerankers.token_cache import TokenCache, text_key

# Models whose position ids start after the padding index: they lose `pad_token_id + 1` positions.
PADDING_OFFSET_MODEL_TYPES = {
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "data2vec-text",
}


# Cached passage ids are kept up to this many tokens when the model sets no position limit.
CACHE_CAP = 8192


def passage_fit(query_tokens: int, passage_tokens: int, special_tokens: int, max_length: int) -> int:
    """The passage tokens a pair keeps (`truncation='only_second'`). As transformers 4.46 does:
    when the passage is too short to absorb the excess (only possible if query_max_length >
    max_length - special tokens), the pair stays whole."""
    excess = query_tokens + passage_tokens + special_tokens - max_length
    return passage_tokens - excess if 0 < excess < passage_tokens else passage_tokens


@dataclass(frozen=True, slots=True)
class EncodedPair:
    input_ids: list[int]
    token_type_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


class EncoderReranker(Reranker):
    family = "encoder"
    options = ()  # inputs are fixed by the checkpoint: no per-call options
    auto_model = "AutoModelForSequenceClassification"  # also trust_remote_code, attn_implementation
    load_options = ("query_max_length",)

    def __init__(
        self,
        *,
        model: torch.nn.Module | None,
        tokenizer: Any,
        name: str,
        device: str,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        query_max_length: int | None = None,
        config: Any = None,
    ):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(f"reranker {name!r} needs a fast tokenizer (tokenizer.json)")
        self.model = model
        # Only the config when another runtime runs the forward (onnx_runtime.py): no torch weights.
        self.config = model.config if config is None else config
        self.tokenizer = tokenizer
        # A private backend, never reconfigured after this point: request threads only read it, so
        # they never trip the tokenizers "Already borrowed" error that HF's __call__ can cause
        # (it resets truncation and padding on the backend for every call).
        self._backend = Tokenizer.from_str(backend.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        processor = self._backend.post_processor
        self._pair_special_tokens = processor.num_special_tokens_to_add(True) if processor else 0
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._pad_left = getattr(tokenizer, "padding_side", "right") == "left"
        self._use_token_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self._truncation_side = getattr(tokenizer, "truncation_side", "right")
        self._template = PairTemplate.derive(self._backend)
        super().__init__(
            name=name, device=device, dtype=dtype, max_length=max_length, batch_size=batch_size
        )
        self.query_max_length = query_max_length
        # Batches as one unpadded row (rerankers/runtimes/packed.py); `load` turns it on where it fits.
        self.packed = False
        # Passage ids by text (RAG_RERANK_TOKEN_CACHE); shared by the scheduler's shallow copy.
        self.token_cache = TokenCache()

    @classmethod
    def _loaded(
        cls, checkpoint: Checkpoint, tokenizer: Any, model: Any, device: str, dtype: Any, **options
    ) -> EncoderReranker:
        """`load`'s tail: a one-label head is required, and batches are packed where it fits."""
        if model.config.num_labels != 1:
            raise ModelLoadError(
                f"reranker {checkpoint.name_or_path!r} has {model.config.num_labels} labels; the "
                "encoder family needs a one-label relevance head (use a cross-encoder such as "
                "BAAI/bge-reranker-v2-m3)"
            )
        reranker = super()._loaded(checkpoint, tokenizer, model, device, dtype, **options)
        reranker.packed = packed.enable(model, device)
        return reranker

    def use_token_cache(self, max_tokens: int) -> None:
        self.token_cache = TokenCache(max_tokens)

    @property
    def text_tokenizer(self) -> Tokenizer:
        """The model's `tokenizers` backend, safe to share between threads (never reconfigured)."""
        return self._backend

    @property
    def max_supported_length(self) -> int | None:
        config = self.config
        positions = getattr(config, "max_position_embeddings", None)
        if positions is None:
            return None
        if getattr(config, "model_type", None) in PADDING_OFFSET_MODEL_TYPES:
            positions -= (config.pad_token_id or 0) + 1
        return positions

    def tokenize(self, pairs: Sequence[tuple[str, str]], max_length: int) -> list[EncodedPair]:
        query_max_length = self.query_max_length or max(1, max_length * 3 // 4)
        if self._template is None:
            return self._tokenize_with_post_process(pairs, max_length, query_max_length)
        # score(query, passages) repeats one query: encode each distinct query once.
        distinct = list(dict.fromkeys(query for query, _ in pairs))
        queries = {
            query: self._cut(encoding.ids, query_max_length)
            for query, encoding in zip(distinct, self._encode(distinct), strict=True)
        }
        passages = self._passage_ids([passage for _, passage in pairs], max_length)
        template = self._template
        features = []
        for (query, _), ids in zip(pairs, passages, strict=True):
            query_ids = queries[query]
            passage_ids = self._cut(ids, max_length)
            keep = passage_fit(len(query_ids), len(passage_ids), template.special_tokens, max_length)
            features.append(EncodedPair(*template.build(query_ids, self._cut(passage_ids, keep))))
        return features

    def _passage_ids(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Each passage's ids without special tokens, from the token cache where it has them."""
        cap = self.max_supported_length or CACHE_CAP
        if max_length > cap or not self.token_cache.max_tokens:
            return [encoding.ids for encoding in self._encode(texts)]
        keys = [text_key(text) for text in texts]
        found = self.token_cache.get_many(keys)
        missing = {
            key: text for key, text, ids in zip(keys, texts, found, strict=True) if ids is None
        }
        if not missing:
            return found
        fresh = {}
        for key, encoding in zip(missing, self._encode(list(missing.values())), strict=True):
            fresh[key] = self._cut(encoding.ids, cap)
            self.token_cache.put(key, fresh[key])
        return [fresh[key] if ids is None else ids for key, ids in zip(keys, found, strict=True)]

    def _encode(self, texts: list[str]) -> list[Any]:
        # encode_batch_fast (tokenizers >= 0.21) skips the offsets, which pairs never use.
        encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
        return encode(texts, add_special_tokens=False)

    def _cut(self, ids: list[int], max_length: int) -> list[int]:
        """`Encoding.truncate(max_length)` on plain ids: keep the tokenizer's truncation side."""
        if len(ids) <= max_length:
            return ids
        return ids[len(ids) - max_length :] if self._truncation_side == "left" else ids[:max_length]

    def _tokenize_with_post_process(
        self, pairs: Sequence[tuple[str, str]], max_length: int, query_max_length: int
    ) -> list[EncodedPair]:
        """The general path, for post-processors `PairTemplate` cannot read."""
        distinct = list(dict.fromkeys(query for query, _ in pairs))
        encoded = self._backend.encode_batch(distinct, add_special_tokens=False)
        queries = {}
        for query, encoding in zip(distinct, encoded, strict=True):
            self._truncate(encoding, query_max_length)
            queries[query] = encoding
        passages = self._backend.encode_batch(
            [passage for _, passage in pairs], add_special_tokens=False
        )
        features = []
        for (query, _), passage in zip(pairs, passages, strict=True):
            query_encoding = queries[query]
            self._truncate(passage, max_length)
            self._truncate(
                passage,
                passage_fit(len(query_encoding), len(passage), self._pair_special_tokens, max_length),
            )
            pair = self._backend.post_process(query_encoding, passage, add_special_tokens=True)
            features.append(EncodedPair(pair.ids, pair.type_ids))
        return features

    def collate(self, features: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
        if self.packed:
            return self.to_device(packed.collate(features, self.config.pad_token_id))
        width = max(len(feature) for feature in features)
        input_ids = np.full((len(features), width), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(features), width), dtype=np.int64)
        token_type_ids = np.zeros((len(features), width), dtype=np.int64)
        for row, feature in enumerate(features):
            size = len(feature)
            span = slice(width - size, width) if self._pad_left else slice(0, size)
            input_ids[row, span] = feature.input_ids
            attention_mask[row, span] = 1
            token_type_ids[row, span] = feature.token_type_ids
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._use_token_type_ids:
            batch["token_type_ids"] = token_type_ids
        return self.to_device({key: torch.from_numpy(value) for key, value in batch.items()})

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.packed:
            return packed.forward(self.model, batch)
        return self.model(**batch, return_dict=True).logits

    def _truncate(self, encoding: Any, max_length: int) -> None:
        """Cut to `max_length` tokens from the tokenizer's truncation side, with no stride."""
        if len(encoding) > max_length:
            encoding.truncate(max_length, direction=self._truncation_side)
