"""LLM rerankers (bge-reranker-v2-gemma and other causal LMs): the logit of "Yes" after a prompt.

Scores as FlagEmbedding 1.4.2's `FlagLLMReranker` does: the input is `[bos] A: {query} \\n B:
{passage} \\n {prompt}` (built by `decoder_inputs.DecoderInputBuilder`, which documents the
truncation), and the score is the next-token logit of the first token of "Yes" at the last real
position. The model is transformers' own `AutoModelForCausalLM` (GemmaForCausalLM,
LlamaForCausalLM, Qwen2ForCausalLM...). Only the last position's logits are projected onto the
vocabulary (`logits_to_keep`), not every position's: bge-reranker-v2-gemma has 256k tokens.

Per-call options (`score(..., prompt=..., query_max_length=...)`) go to `tokenize`.
"""

from __future__ import annotations

import inspect

import torch

from search_service.errors import ModelLoadError
from search_service.rerankers.families.decoder import DecoderReranker
from search_service.rerankers.families.decoder_inputs import last_token_positions

YES = "Yes"


class LLMReranker(DecoderReranker):
    """Constructed as `DecoderReranker` (model, tokenizer, name, device, dtype, max_length,
    batch_size, query_max_length, prompt)."""

    family = "llm"
    options = ("prompt", "query_max_length")
    auto_model = "AutoModelForCausalLM"  # `load` also takes trust_remote_code, attn_implementation

    def _prepare(self) -> None:
        yes_ids = self.tokenizer(YES, add_special_tokens=False)["input_ids"]
        if not yes_ids:
            raise ModelLoadError(
                f"reranker {self.name!r}: the tokenizer gives no token for {YES!r}"
            )
        self.yes_id = yes_ids[0]
        # transformers' own causal LMs take logits_to_keep; remote-code ones may not.
        parameters = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in parameters

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        last = last_token_positions(batch["attention_mask"])
        if self._keeps_logits and self.inputs.padding_side == "left":
            # Left padding (Gemma, Llama): every row ends in the last column. An int
            # logits_to_keep means the same in every transformers 5 release (a per-row tensor
            # does not: 5.17 indexes dim 1 with it and gets (batch, batch, 1, vocab) logits).
            logits = self.model(
                **batch, logits_to_keep=1, use_cache=False, return_dict=True
            ).logits[:, -1]
        else:
            logits = self.model(**batch, use_cache=False, return_dict=True).logits
            logits = logits[torch.arange(logits.shape[0], device=logits.device), last]
        return logits[:, self.yes_id]
