"""Inputs for decoder-only rerankers, built exactly as FlagEmbedding 1.4.2 builds them.

Shared by the `llm` (FlagLLMReranker), `layerwise` (LayerWiseFlagLLMReranker) and `lightweight`
(LightWeightFlagLLMReranker) families. For one (query, passage) pair, FlagEmbedding does:

1. tokenize `"A: {query}"` without special tokens, cut to `query_max_length` (default
   `max_length * 3 // 4`), and `"B: {passage}"` without special tokens, cut to `max_length`
   (both cut from the tokenizer's `truncation_side`);
2. `first = [bos] + query`, `second = sep + passage`, where `sep` is the tokens of `"\\n"`; the
   `llm` family prepends BOS only when the tokenizer has one that differs from its pad token,
   the other two families always prepend it (`BosPolicy`);
3. `prepare_for_model(first, second, truncation='only_second', max_length=budget,
   add_special_tokens=False)` with `budget = max_length + len(sep) + len(prompt)`: the truncation
   budget grows with the prompt, so a longer custom prompt keeps more of the passage. Only the
   second sequence is cut; when it is too short to absorb the excess (a very long query), the pair
   is left whole, as transformers 4.46 does (it logs an error and truncates nothing);
4. append `sep + prompt` (default prompt: `DEFAULT_PROMPT`);
5. pad the batch to its longest row rounded up to a multiple of 8, on the tokenizer's
   `padding_side` (Gemma and Llama tokenizers pad left; FlagEmbedding's lightweight family forces
   right), with an attention mask.

transformers 5 has no `prepare_for_model`, so this module works on token id lists, on a private
copy of the tokenizer's `tokenizers` backend (never reconfigured, so it is safe to share between
request threads).

    builder = DecoderInputBuilder(tokenizer)
    features = builder.build(pairs, max_length=512, prompt=None)   # one DecoderFeature per pair
    batch = builder.collate(features)        # {"input_ids", "attention_mask"} (CPU tensors)
    last = last_token_positions(batch["attention_mask"])           # where the score is read
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer

DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query "
    "by providing a prediction of either 'Yes' or 'No'."
)
SEP = "\n"
QUERY_INSTRUCTION = "A: "
PASSAGE_INSTRUCTION = "B: "
PAD_TO_MULTIPLE_OF = 8


class BosPolicy(enum.Enum):
    """When the BOS token starts the first sequence."""

    IF_DISTINCT = "if_distinct"  # FlagLLMReranker: only if bos exists and bos != pad
    ALWAYS = "always"  # LayerWise/LightWeight FlagLLMReranker: unconditionally


@dataclass(frozen=True, slots=True)
class DecoderFeature:
    """One pair's unpadded token ids, with the lengths the lightweight family needs.

    `query_length`: tokens of `[bos] + query + sep` (FlagEmbedding's `query_lengths`);
    `prompt_length`: tokens of `sep + prompt` (its `prompt_lengths`).
    """

    input_ids: list[int]
    query_length: int
    prompt_length: int

    def __len__(self) -> int:
        return len(self.input_ids)


def truncate_only_second(
    first: Sequence[int], second: Sequence[int], max_length: int, truncation_side: str = "right"
) -> list[int]:
    """The second sequence as transformers 4.46's `prepare_for_model(first, second,
    truncation='only_second', max_length=max_length, add_special_tokens=False)` leaves it.

    It removes `len(first) + len(second) - max_length` tokens from the second sequence's
    `truncation_side` end; when that is not strictly less than `len(second)`, nothing is removed.
    """
    second = list(second)
    excess = len(first) + len(second) - max_length
    if excess <= 0 or len(second) <= excess:
        return second
    return second[excess:] if truncation_side == "left" else second[:-excess]


def pad_batch(
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    padding_side: str = "left",
    pad_to_multiple_of: int | None = PAD_TO_MULTIPLE_OF,
) -> dict[str, torch.Tensor]:
    """`tokenizer.pad(..., padding=True, pad_to_multiple_of=8)`: ids and attention mask tensors."""
    width = max(len(sequence) for sequence in sequences)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        size = len(sequence)
        span = slice(width - size, width) if padding_side == "left" else slice(0, size)
        input_ids[row, span] = torch.tensor(list(sequence), dtype=torch.long)
        attention_mask[row, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding (FlagEmbedding's
    `last_logit_pool` reads the same position)."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.flip(1).argmax(dim=1)


class DecoderInputBuilder:
    """Builds FlagEmbedding's decoder-only reranker inputs from a Hugging Face fast tokenizer.

    `tokenizer` must expose `backend_tokenizer` (a fast tokenizer); its `bos_token_id`,
    `pad_token_id`, `padding_side` and `truncation_side` are read once here. `padding_side`
    overrides the tokenizer's (the lightweight family pads right). Thread-safe after construction.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        bos_policy: BosPolicy = BosPolicy.IF_DISTINCT,
        padding_side: str | None = None,
        query_instruction: str = QUERY_INSTRUCTION,
        passage_instruction: str = PASSAGE_INSTRUCTION,
    ):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError("decoder rerankers need a fast tokenizer (tokenizer.json)")
        self._backend = Tokenizer.from_str(backend.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
        if bos_policy is BosPolicy.ALWAYS:
            if bos is None:
                raise ValueError("this reranker family needs a tokenizer with a BOS token")
            self.bos_ids = [bos]
        else:
            self.bos_ids = [bos] if bos is not None and bos != pad else []
        # tokenizer.pad fails without a pad token; FlagEmbedding's checkpoints all have one.
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.padding_side = padding_side or getattr(tokenizer, "padding_side", "right")
        self.truncation_side = getattr(tokenizer, "truncation_side", "right")
        self.query_instruction = query_instruction
        self.passage_instruction = passage_instruction
        self.sep_ids = self.encode(SEP)
        self._prompt_cache: dict[str, list[int]] = {}
        self._prompt_lock = threading.Lock()

    def __getstate__(self) -> dict:
        # A lock cannot be copied or pickled; a copy gets its own.
        return {key: value for key, value in self.__dict__.items() if key != "_prompt_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._prompt_lock = threading.Lock()

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """`tokenizer(text, add_special_tokens=False, max_length=..., truncation=True)` ids."""
        encoding = self._backend.encode(text, add_special_tokens=False)
        return self._cut(encoding, max_length)

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        encodings = self._backend.encode_batch(list(texts), add_special_tokens=False)
        return [self._cut(encoding, max_length) for encoding in encodings]

    def prompt_ids(self, prompt: str | None = None) -> list[int]:
        """Tokens of the prompt (`DEFAULT_PROMPT` when None), cached per prompt text."""
        text = DEFAULT_PROMPT if prompt is None else prompt
        cached = self._prompt_cache.get(text)
        if cached is None:
            cached = self.encode(text)
            with self._prompt_lock:
                if len(self._prompt_cache) > 64:  # per-call prompts: keep the cache bounded
                    self._prompt_cache.clear()
                self._prompt_cache[text] = cached
        return cached

    def build(
        self,
        pairs: Sequence[tuple[str, str]],
        max_length: int,
        *,
        prompt: str | None = None,
        query_max_length: int | None = None,
    ) -> list[DecoderFeature]:
        """One unpadded `DecoderFeature` per (query, passage) pair, in order (steps 1-4 above)."""
        if query_max_length is None:
            query_max_length = max_length * 3 // 4
        prompt_ids = self.prompt_ids(prompt)
        sep_ids = self.sep_ids
        budget = max_length + len(sep_ids) + len(prompt_ids)
        # score(query, passages) repeats one query: tokenize each distinct query once.
        distinct = list(dict.fromkeys(query for query, _ in pairs))
        query_ids = dict(
            zip(
                distinct,
                self.encode_batch(
                    [self.query_instruction + query for query in distinct], query_max_length
                ),
                strict=True,
            )
        )
        passage_ids = self.encode_batch(
            [self.passage_instruction + passage for _, passage in pairs], max_length
        )
        suffix = sep_ids + prompt_ids
        features = []
        for (query, _), passage in zip(pairs, passage_ids, strict=True):
            first = self.bos_ids + query_ids[query]
            second = truncate_only_second(first, sep_ids + passage, budget, self.truncation_side)
            features.append(
                DecoderFeature(
                    input_ids=first + second + suffix,
                    query_length=len(first) + len(sep_ids),
                    prompt_length=len(suffix),
                )
            )
        return features

    def collate(
        self,
        features: Sequence[DecoderFeature],
        pad_to_multiple_of: int | None = PAD_TO_MULTIPLE_OF,
    ) -> dict[str, torch.Tensor]:
        """Pad a batch (step 5): `{"input_ids", "attention_mask"}` on the CPU."""
        return pad_batch(
            [feature.input_ids for feature in features],
            self.pad_id,
            self.padding_side,
            pad_to_multiple_of,
        )

    def _cut(self, encoding: Any, max_length: int | None) -> list[int]:
        if max_length is not None and len(encoding) > max_length:
            encoding.truncate(max_length, direction=self.truncation_side)
        return list(encoding.ids)
