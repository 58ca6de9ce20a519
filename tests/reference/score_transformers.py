"""Runs inside the reference env (transformers 4.46): the seed's raw-transformers snippet, and
tokenizer dumps used to check that the tiny checkpoint tokenizes the same under transformers 4
and 5.

Input: {"checkpoint": dir, "jobs": [job, ...]}; output: one result per job.
- {"kind": "snippet", "pairs": [[q, p], ...], "max_length": 512} -> scores, computed as the model
  card does: tokenizer(pairs, padding=True, truncation=True, max_length=...), logits.view(-1).
- {"kind": "tokenize", "pairs": [...], "max_length": m} -> {"pair_ids", "query_ids", "passage_ids",
  "flag_ids"}: plain pair encodings, and FlagEmbedding's construction through the 4.46 tokenizer's
  own prepare_for_model (query cut to 3/4 of max_length, truncation='only_second').
"""

import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def snippet_scores(checkpoint, job):
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    model.eval()
    with torch.no_grad():
        inputs = tokenizer(
            job["pairs"],
            padding=True,
            truncation=True,
            return_tensors="pt",
            max_length=job.get("max_length", 512),
        )
        return model(**inputs, return_dict=True).logits.view(-1).float().tolist()


def tokenize(checkpoint, job):
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    max_length = job.get("max_length", 512)
    queries = [q for q, _ in job["pairs"]]
    passages = [p for _, p in job["pairs"]]
    query_ids = tokenizer(
        queries, add_special_tokens=False, max_length=max_length * 3 // 4, truncation=True
    )["input_ids"]
    passage_ids = tokenizer(
        passages, add_special_tokens=False, max_length=max_length, truncation=True
    )["input_ids"]
    flag_ids = [
        tokenizer.prepare_for_model(
            q, p, truncation="only_second", max_length=max_length, padding=False
        )["input_ids"]
        for q, p in zip(query_ids, passage_ids, strict=True)
    ]
    return {
        "tokenizer_class": type(tokenizer).__name__,
        "pair_ids": [tokenizer(q, p)["input_ids"] for q, p in job["pairs"]],
        "query_ids": tokenizer(queries, add_special_tokens=False)["input_ids"],
        "passage_ids": tokenizer(passages, add_special_tokens=False)["input_ids"],
        "flag_ids": flag_ids,
    }


def main():
    request = json.load(sys.stdin)
    handlers = {"snippet": snippet_scores, "tokenize": tokenize}
    json.dump(
        [handlers[job["kind"]](request["checkpoint"], job) for job in request["jobs"]], sys.stdout
    )


if __name__ == "__main__":
    main()
