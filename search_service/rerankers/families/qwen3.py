"""Qwen3-Reranker (0.6B, 4B, 8B): a `Qwen3ForCausalLM` asked "yes" or "no" in its chat template.

Scores as the example code of the QwenLM/Qwen3-Embedding README (and the model cards) does,
copied in tests/reference/qwen3_reranker_readme.py:

- the input is `PREFIX + body + SUFFIX`, with the body
  `<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}` tokenized as one text
  (no special tokens added) and cut, from the tokenizer's truncation side, to `max_length` minus the
  prefix and the suffix: only the body is truncated, the template never is;
- the instruction defaults to `DEFAULT_INSTRUCTION`; the per-call `prompt` option replaces it;
- padding is on the left, so every row ends in the last column, where the next-token logits of
  `yes` and `no` are read: the raw score is logit(yes) - logit(no), and its sigmoid is the
  reference's two-way softmax probability of "yes" (`score(..., normalize=True)`).

`max_length` (the whole input, template included) defaults to 8,192, as in the reference. On a
GPU `auto` is bfloat16, the published weights' dtype (float16 where the GPU lacks it).
Only the last position's logits are projected onto the vocabulary (`logits_to_keep=1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from search_service.errors import ModelLoadError
from search_service.rerankers.base import DEFAULT_BATCH_SIZE, Reranker, bfloat16_on_gpu
from search_service.rerankers.families.decoder_inputs import DecoderInputBuilder, pad_batch

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
DEFAULT_MAX_LENGTH = 8192
ANSWER_TOKENS = ("yes", "no")
# The same layout as a chat template with `query` and `document` roles (and an optional `system`
# one for the instruction), for tools that render chat templates, e.g. sentence-transformers'
# CrossEncoder (`processor_kwargs={"chat_template": CHAT_TEMPLATE}`). Jinja drops one trailing
# newline: hence the extra one.
CHAT_TEMPLATE = (
    PREFIX
    + '<Instruct>: {{ messages | selectattr("role", "eq", "system") | map(attribute="content") '
    + f'| first | default("{DEFAULT_INSTRUCTION}") }}}}\n'
    + '<Query>: {{ messages | selectattr("role", "eq", "query") | map(attribute="content") '
    + "| first }}\n"
    + '<Document>: {{ messages | selectattr("role", "eq", "document") | map(attribute="content") '
    + "| first }}"
    + SUFFIX
    + "\n"
)


@dataclass(frozen=True, slots=True)
class TemplateFeature:
    """One pair's unpadded token ids (prefix, body, suffix)."""

    input_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


class Qwen3Reranker(Reranker):
    """Qwen3-Reranker on transformers' `AutoModelForCausalLM`; `prompt` is the instruction."""

    family = "qwen3-reranker"
    options = ("prompt",)
    auto_model = "AutoModelForCausalLM"  # `load` also takes trust_remote_code, attn_implementation

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        name: str,
        device: str,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        prompt: str | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        try:
            # Only its thread-safe copy of the `tokenizers` backend, pad id and sides are used.
            self.inputs = DecoderInputBuilder(tokenizer, padding_side="left")
        except ValueError as error:
            raise ModelLoadError(f"reranker {name!r}: {error}") from error
        # The model's `tokenizers` backend, safe to share between threads (never reconfigured):
        # the API cuts documents with it (`max_tokens_per_doc`).
        self.text_tokenizer = self.inputs._backend
        self.instruction = DEFAULT_INSTRUCTION if prompt is None else prompt
        super().__init__(
            name=name, device=device, dtype=dtype, max_length=max_length, batch_size=batch_size
        )
        vocab = tokenizer.get_vocab()
        missing = [token for token in ANSWER_TOKENS if token not in vocab]
        if missing:
            raise ModelLoadError(
                f"reranker {name!r}: the tokenizer has no single token for {missing}; a "
                "Qwen3-Reranker answers 'yes' or 'no'"
            )
        self.yes_id, self.no_id = (vocab[token] for token in ANSWER_TOKENS)
        self.prefix_ids = self.inputs.encode(PREFIX)
        self.suffix_ids = self.inputs.encode(SUFFIX)

    @classmethod
    def default_dtype(cls, device: str) -> str | None:
        # The published weights are bfloat16 (as vLLM and TEI serve them); float16 on request.
        return bfloat16_on_gpu(device)

    @property
    def max_supported_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def body_budget(self, max_length: int) -> int:
        """Tokens left for the body once the prefix and the suffix are in (never below 0)."""
        return max(max_length - len(self.prefix_ids) - len(self.suffix_ids), 0)

    def passage_budget(self, query: str, max_length: int | None = None) -> int:
        """Tokens a document may take beside `query` (default instruction) within `max_length`
        (default: the instance's), for cutting documents from the left (TEI's
        `truncation_direction: left`, `retrieval.rerank.keep_ends`); within a token or two, as
        the body is tokenized as one text."""
        head = BODY.format(instruction=self.instruction, query=query, document="")
        return self.body_budget(max_length or self.max_length) - len(self.inputs.encode(head))

    def tokenize(
        self, pairs: Sequence[tuple[str, str]], max_length: int, *, prompt: str | None = None
    ) -> list[TemplateFeature]:
        instruction = self.instruction if prompt is None else prompt
        bodies = [
            BODY.format(instruction=instruction, query=query, document=document)
            for query, document in pairs
        ]
        encoded = self.inputs.encode_batch(bodies, self.body_budget(max_length))
        prefix, suffix = self.prefix_ids, self.suffix_ids
        return [TemplateFeature(prefix + body + suffix) for body in encoded]

    def collate(self, features: Sequence[TemplateFeature]) -> dict[str, torch.Tensor]:
        batch = pad_batch([feature.input_ids for feature in features], self.inputs.pad_id, "left")
        return self.to_device(batch)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Left padding: every row's last real token is in the last column.
        logits = self.model(**batch, logits_to_keep=1, use_cache=False, return_dict=True).logits
        last = logits[:, -1].float()
        return last[:, self.yes_id] - last[:, self.no_id]
