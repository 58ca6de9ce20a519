"""Runs inside the reference env (FlagEmbedding 1.4.2, transformers 4.46): layerwise references.

Input: {"checkpoint": dir, "jobs": [job, ...]}; output: one result per job. Models load once.
- {"kind": "flag", "pairs": [[q, p], ...], **kwargs} -> `LayerWiseFlagLLMReranker(checkpoint,
  use_fp16=False, devices=["cpu"]).compute_score(pairs, **kwargs)` (kwargs: cutoff_layers,
  normalize, max_length, prompt, batch_size, query_max_length): a list of scores for one layer, a
  list of lists for several (FlagEmbedding's own shapes).
- {"kind": "inputs", "pairs": ..., **kwargs} -> the token ids FlagEmbedding feeds its model during
  that compute_score call: one unpadded list per pair (in its length-sorted order), plus the
  padded widths of its batches.
- {"kind": "snippet", "pairs": ..., "cutoff_layers": [n], "max_length": 1024, "prompt": null} ->
  one list of scores per layer from the model card's raw-transformers snippet
  (AutoModelForCausalLM with trust_remote_code, `scores[:, -1]`).
- {"kind": "tokenize", "texts": [...]} -> {"tokenizer_class", "padding_side", "ids", "ids_special"}.
"""

import json
import logging
import sys

import torch

DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query "
    "by providing a prediction of either 'Yes' or 'No'."
)


def get_inputs(pairs, tokenizer, prompt=None, max_length=1024):
    """The model card's `get_inputs`, verbatim apart from formatting."""
    if prompt is None:
        prompt = DEFAULT_PROMPT
    sep = "\n"
    prompt_inputs = tokenizer(prompt, return_tensors=None, add_special_tokens=False)["input_ids"]
    sep_inputs = tokenizer(sep, return_tensors=None, add_special_tokens=False)["input_ids"]
    inputs = []
    for query, passage in pairs:
        query_inputs = tokenizer(
            f"A: {query}",
            return_tensors=None,
            add_special_tokens=False,
            max_length=max_length * 3 // 4,
            truncation=True,
        )
        passage_inputs = tokenizer(
            f"B: {passage}",
            return_tensors=None,
            add_special_tokens=False,
            max_length=max_length,
            truncation=True,
        )
        item = tokenizer.prepare_for_model(
            [tokenizer.bos_token_id] + query_inputs["input_ids"],
            sep_inputs + passage_inputs["input_ids"],
            truncation="only_second",
            max_length=max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            add_special_tokens=False,
        )
        item["input_ids"] = item["input_ids"] + sep_inputs + prompt_inputs
        item["attention_mask"] = [1] * len(item["input_ids"])
        inputs.append(item)
    return tokenizer.pad(
        inputs,
        padding=True,
        max_length=max_length + len(sep_inputs) + len(prompt_inputs),
        pad_to_multiple_of=8,
        return_tensors="pt",
    )


class References:
    def __init__(self, checkpoint):
        from transformers import AutoTokenizer

        self.checkpoint = checkpoint
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self._flag = None
        self._remote = None

    @property
    def reranker(self):
        if self._flag is None:
            from FlagEmbedding import LayerWiseFlagLLMReranker

            self._flag = LayerWiseFlagLLMReranker(self.checkpoint, use_fp16=False, devices=["cpu"])
        return self._flag

    def flag(self, job):
        scores = self.reranker.compute_score(job.pop("pairs"), **job)
        if scores and isinstance(scores[0], list):
            return [[float(value) for value in layer] for layer in scores]
        return [float(value) for value in scores]

    def inputs(self, job):
        batches = []

        def capture(module, args, kwargs):
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            batches.append((ids.shape[1], [row[m.bool()].tolist() for row, m in zip(ids, mask)]))

        handle = self.reranker.model.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.reranker.compute_score(job.pop("pairs"), **job)
        finally:
            handle.remove()
        # FlagEmbedding first runs its first batch once to probe the batch size: drop that call.
        batches = batches[1:]
        return {
            "rows": [row for _, rows in batches for row in rows],
            "widths": [width for width, _ in batches],
        }

    def snippet(self, job):
        from transformers import AutoModelForCausalLM

        if self._remote is None:
            self._remote = AutoModelForCausalLM.from_pretrained(
                self.checkpoint, trust_remote_code=True, torch_dtype=torch.float32
            ).eval()
        with torch.no_grad():
            inputs = get_inputs(
                job["pairs"], self.tokenizer, job.get("prompt"), job.get("max_length", 1024)
            )
            all_scores = self._remote(
                **inputs, return_dict=True, cutoff_layers=job["cutoff_layers"]
            )
            return [scores[:, -1].view(-1).float().tolist() for scores in all_scores[0]]

    def tokenize(self, job):
        texts = job["texts"]
        return {
            "tokenizer_class": type(self.tokenizer).__name__,
            "padding_side": self.tokenizer.padding_side,
            "ids": [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts],
            "ids_special": [self.tokenizer(text)["input_ids"] for text in texts],
        }


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    request = json.load(sys.stdin)
    references = References(request["checkpoint"])
    results = []
    for job in request["jobs"]:
        job = dict(job)
        results.append(getattr(references, job.pop("kind"))(job))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
