"""Runs inside the reference env (FlagEmbedding 1.4.2, transformers 4.46): decoder-only references.

Input: {"checkpoint": dir, "jobs": [job, ...]}; output: one result per job. Models load once.
- {"kind": "flag", "pairs": [[q, p], ...], **kwargs} -> scores from
  `FlagLLMReranker(checkpoint, use_fp16=False, devices=["cpu"]).compute_score(pairs, **kwargs)`
  (kwargs: normalize, max_length, prompt, batch_size, query_max_length).
- {"kind": "snippet", "pairs": ..., "max_length": 1024, "prompt": null} -> scores from the model
  card's raw-transformers `get_inputs` snippet (AutoModelForCausalLM, logits[:, -1, yes]).
- {"kind": "tokenize", "pairs": ..., "max_length": m, "prompt": null} -> {"tokenizer_class",
  "padding_side", "plain_ids", "query_ids", "passage_ids", "yes_ids", "flag_ids"}: the 4.46
  tokenizer's own ids, and FlagLLMReranker's unpadded inputs built with the real
  `prepare_for_model` (budget max_length + len(sep) + len(prompt)).
"""

import json
import logging
import sys

DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query "
    "by providing a prediction of either 'Yes' or 'No'."
)


def snippet_inputs(pairs, tokenizer, prompt=None, max_length=1024):
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
        self.checkpoint = checkpoint
        self._flag = None
        self._model = None
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def flag(self, job):
        if self._flag is None:
            from FlagEmbedding import FlagLLMReranker

            self._flag = FlagLLMReranker(self.checkpoint, use_fp16=False, devices=["cpu"])
        scores = self._flag.compute_score(job.pop("pairs"), **job)
        return [float(score) for score in scores]

    def snippet(self, job):
        import torch
        from transformers import AutoModelForCausalLM

        if self._model is None:
            self._model = AutoModelForCausalLM.from_pretrained(self.checkpoint).eval()
        tokenizer = self.tokenizer
        yes_loc = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
        with torch.no_grad():
            inputs = snippet_inputs(
                job["pairs"], tokenizer, job.get("prompt"), job.get("max_length", 1024)
            )
            logits = self._model(**inputs, return_dict=True).logits
            return logits[:, -1, yes_loc].view(-1).float().tolist()

    def tokenize(self, job):
        tokenizer = self.tokenizer
        max_length = job.get("max_length", 512)
        prompt = job.get("prompt") or DEFAULT_PROMPT
        queries = [f"A: {q}" for q, _ in job["pairs"]]
        passages = [f"B: {p}" for _, p in job["pairs"]]
        query_ids = tokenizer(
            queries, add_special_tokens=False, max_length=max_length * 3 // 4, truncation=True
        )["input_ids"]
        passage_ids = tokenizer(
            passages, add_special_tokens=False, max_length=max_length, truncation=True
        )["input_ids"]
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sep_ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
        budget = max_length + len(sep_ids) + len(prompt_ids)
        flag_ids = [
            tokenizer.prepare_for_model(
                [tokenizer.bos_token_id] + q,
                sep_ids + p,
                truncation="only_second",
                max_length=budget,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                add_special_tokens=False,
            )["input_ids"]
            + sep_ids
            + prompt_ids
            for q, p in zip(query_ids, passage_ids, strict=True)
        ]
        texts = [text for pair in job["pairs"] for text in pair]
        return {
            "tokenizer_class": type(tokenizer).__name__,
            "padding_side": tokenizer.padding_side,
            "plain_ids": tokenizer(texts)["input_ids"],
            "query_ids": tokenizer(queries, add_special_tokens=False)["input_ids"],
            "passage_ids": tokenizer(passages, add_special_tokens=False)["input_ids"],
            "yes_ids": tokenizer("Yes", add_special_tokens=False)["input_ids"],
            "flag_ids": flag_ids,
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
