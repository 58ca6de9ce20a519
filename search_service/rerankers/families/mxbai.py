"""mxbai-rerank-v2 (mixedbread-ai/mxbai-rerank-base-v2, -large-v2): a Qwen2 causal LM that answers
"1" (relevant) or "0" after a chat-formatted pair.

Scores exactly as the reference package `mxbai-rerank` 0.1.6 (`MxbaiRerankV2`, PyPI; the public
repository mixedbread-ai/mxbai-rerank) does. For one (query, document) pair:

1. the query text is `query: {query}`, or `instruction: {instruction}\\nquery: {query}` with an
   instruction (the `prompt` option; none by default, and an empty one is none), tokenized
   without special tokens and cut to `max_length * 3 // 4` tokens (`query_max_length` overrides
   that budget, an extension);
2. the document text `document: {document}` is cut to `min(positions - query - template,
   max_length)` tokens, where `template` counts the chat prefix, "\\n", the task prompt and the
   chat suffix (`Template`), and `positions` is the model's `max_position_embeddings`;
3. `prepare_for_model(query, "\\n" + document, truncation="only_second", max_length=max_length)`
   cuts the second sequence so that the pair fits `max_length` (`truncate_only_second`);
4. the input is `CHAT_PREFIX + pair + "\\n" + TASK_PROMPT + CHAT_SUFFIX`, padded on the left to the
   batch's longest row rounded up to a multiple of 8.

One difference, on purpose: the reference numbers positions from the first column, pads included,
so a pair's score moves with its batch-mates' lengths (RoPE rounding at large positions; up to
4e-4 on the tests' tiny model). Here each row's positions start at 0 on its first token: a score
does not depend on its batch (dynamic batching, the score cache), and equals the reference's
score of the pair alone, unpadded (tests/rerankers/test_mxbai_parity.py: within 1e-5).

`max_length` is the pair's budget, template excluded; the reference's default is 8,192, and it
clips `max_length` to `positions - template` (here: `max_supported_length`).

The score, `rerank_score`, is the reference's raw score: the logit of "1" minus the logit of "0" at
the last position (`predict(...)`). As for every family here, `score` (`normalize=True`, the API's
`relevance_score`) is its sigmoid: the model's probability of "1" against "0". The package's own
`predict(normalize=True)` is a different scale: `sigmoid(raw - estimated_max / 2)`, shifted by
an estimated maximum score (9 for base-v2, 12 for large-v2 and any other checkpoint), so its
normalized scores are lower than ours; rankings are the same.

dtype `auto` is bfloat16 on a GPU that has it (the published weights' dtype, which the reference
loads), else float16; float32 on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch

from search_service.errors import ModelLoadError
from search_service.rerankers.base import DEFAULT_BATCH_SIZE, bfloat16_on_gpu
from search_service.rerankers.families.decoder import DecoderReranker
from search_service.rerankers.families.decoder_inputs import DecoderFeature, truncate_only_second

REFERENCE_MAX_LENGTH = 8192  # MxbaiRerankV2's default max_length
SEP = "\n"
INSTRUCTION = "instruction: {instruction}"
QUERY = "query: {query}"
DOCUMENT = "document: {document}"
TASK_PROMPT = (
    "You are a search relevance expert who evaluates how well documents match search queries. "
    "For each query-document pair, carefully analyze the semantic relationship between them, "
    "then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\n"
    "Relevance:"
)
CHAT_PREFIX = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n<|im_start|>user\n"
)
CHAT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
YES, NO = "1", "0"


class Template:
    """The fixed token ids around each pair, tokenized once (each text on its own, as the
    reference does)."""

    def __init__(self, encode):
        self.prefix = encode(CHAT_PREFIX)
        self.sep = encode(SEP)
        self.tail = self.sep + encode(TASK_PROMPT) + encode(CHAT_SUFFIX)
        self.length = len(self.prefix) + len(self.tail)  # the reference's predefined_length
        self.yes_id, self.no_id = (self._first(encode, text) for text in (YES, NO))

    @staticmethod
    def _first(encode, text: str) -> int:
        ids = encode(text)
        if not ids:
            raise ValueError(f"the tokenizer gives no token for {text!r}")
        return ids[0]


def query_text(query: str, instruction: str | None) -> str:
    text = QUERY.format(query=query)
    return f"{INSTRUCTION.format(instruction=instruction)}{SEP}{text}" if instruction else text


class MxbaiReranker(DecoderReranker):
    """Constructed as `DecoderReranker` (model, tokenizer, name, device, dtype, max_length,
    batch_size, query_max_length, prompt); `prompt` is the instruction (default: none), and
    `max_length` defaults to the reference's 8,192 within the model's positions."""

    family = "mxbai-rerank"
    options = ("prompt", "query_max_length")
    padding_side = "left"
    auto_model = "AutoModelForCausalLM"  # `load` also takes trust_remote_code, attn_implementation

    def __init__(
        self,
        *,
        max_length: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **arguments: Any,
    ):
        super().__init__(max_length=max_length, batch_size=batch_size, **arguments)

    @cached_property
    def template(self) -> Template:
        try:
            return Template(self.inputs.encode)
        except ValueError as error:
            raise ModelLoadError(f"reranker {self.name!r}: {error}") from error

    def _prepare(self) -> None:
        self.yes_id, self.no_id = self.template.yes_id, self.template.no_id

    @classmethod
    def default_dtype(cls, device: str) -> str | None:
        # The published checkpoints are bfloat16 (the reference loads them as such on a GPU).
        return bfloat16_on_gpu(device)

    @property
    def max_supported_length(self) -> int | None:
        """The pair's budget: the model's positions less the template (the reference's clip)."""
        positions = getattr(self.model.config, "max_position_embeddings", None)
        return None if positions is None else positions - self.template.length

    def _check_max_length(self, max_length: int | None) -> int:
        if max_length is None:  # the reference's default, clipped to the positions as it does
            limit = self.max_supported_length
            return REFERENCE_MAX_LENGTH if limit is None else min(REFERENCE_MAX_LENGTH, limit)
        return super()._check_max_length(max_length)

    def passage_budget(self, query: str, max_length: int | None = None) -> int:
        """Tokens a document may take beside `query` (the default instruction) within `max_length`
        (default: the instance's), for cutting documents from the left (TEI's
        `truncation_direction: left`, `retrieval.rerank.keep_ends`). `document: ` is counted with
        its space, which most tokenizers merge into the next word: a token short at worst, so
        the end of the document is never cut."""
        max_length = max_length or self.max_length
        budget = self.query_max_length or max_length * 3 // 4
        first = min(len(self.inputs.encode(query_text(query, self.prompt))), budget)
        room = max_length - first - len(self.template.sep)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions is not None:
            room = min(room, positions - first - self.template.length)
        return max(room - len(self.inputs.encode(DOCUMENT.format(document=""))), 0)

    def tokenize(
        self,
        pairs: Sequence[tuple[str, str]],
        max_length: int,
        *,
        prompt: str | None = None,
        query_max_length: int | None = None,
    ) -> list[DecoderFeature]:
        """The reference's unpadded inputs (steps 1-4 of the module docstring)."""
        instruction = self.prompt if prompt is None else prompt
        template = self.template
        query_budget = query_max_length or self.query_max_length or max_length * 3 // 4
        distinct = list(dict.fromkeys(query for query, _ in pairs))
        texts = [query_text(query, instruction) for query in distinct]
        query_ids = dict(zip(distinct, self.inputs.encode_batch(texts, query_budget), strict=True))
        documents = [DOCUMENT.format(document=document) for _, document in pairs]
        document_ids = self.inputs.encode_batch(documents, max_length)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        features = []
        for (query, _), document in zip(pairs, document_ids, strict=True):
            first = query_ids[query]
            if positions is not None:
                budget = max(0, min(positions - len(first) - template.length, max_length))
                document = self._cut(document, budget)
            second = truncate_only_second(
                first, template.sep + document, max_length, self.inputs.truncation_side
            )
            features.append(
                DecoderFeature(
                    input_ids=template.prefix + first + second + template.tail,
                    query_length=len(template.prefix) + len(first),
                    prompt_length=len(template.tail),
                )
            )
        return features

    def _cut(self, ids: list[int], budget: int) -> list[int]:
        """The first (or, truncating on the left, the last) `budget` tokens."""
        if len(ids) <= budget:
            return ids
        return ids[len(ids) - budget :] if self.inputs.truncation_side == "left" else ids[:budget]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Positions from each row's first token (see the module docstring). Left padding: every
        # row ends in the last column, whose logits only are projected onto the vocabulary.
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = self.model(
            **batch, position_ids=positions, logits_to_keep=1, use_cache=False, return_dict=True
        ).logits
        last = logits[:, -1].float()
        return last[:, self.yes_id] - last[:, self.no_id]
