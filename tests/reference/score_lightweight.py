"""Runs inside the reference env: FlagEmbedding's LightWeightFlagLLMReranker scores, JSON in and out.

Input: {"checkpoint": dir, "jobs": [{"pairs": [[q, p], ...], "normalize": bool,
"attn_implementation": "eager" (optional), **kwargs}]} (kwargs go to compute_score: cutoff_layers,
compress_ratio, compress_layers, prompt, max_length, batch_size, ...).
Output: one result per job: a list of scores, or one list per cutoff layer when several are asked.
A job with `"kind": "inputs"` returns instead what the model was given, one
`[input_ids, query_length, prompt_length]` per pair (padding removed), in FlagEmbedding's order
(longest first; its batch-size probe, a repeat of the first batch, is left out).

`LightWeightFlagLLMReranker(checkpoint, use_fp16=False, devices=['cpu'])` loads the model with
SDPA attention (no attention softcapping); a job with `"attn_implementation": "eager"` runs the same
FlagEmbedding code on the model loaded with transformers 4.46's eager Gemma2 attention, which
applies `attn_logit_softcapping`.
"""

import json
import logging
import sys


def record_inputs(reranker, pairs, options):
    calls = []
    model = reranker.model
    original = model.forward

    def recording(
        input_ids=None, attention_mask=None, query_lengths=None, prompt_lengths=None, **kwargs
    ):
        rows = []
        for ids, mask, query, prompt in zip(
            input_ids, attention_mask, query_lengths, prompt_lengths
        ):
            rows.append([ids[mask.bool()].tolist(), int(query), int(prompt)])
        calls.append(rows)
        return original(
            input_ids=input_ids,
            attention_mask=attention_mask,
            query_lengths=query_lengths,
            prompt_lengths=prompt_lengths,
            **kwargs,
        )

    model.forward = recording
    try:
        reranker.compute_score(pairs, **options)
    finally:
        del model.forward
    return [row for call in calls[1:] for row in call]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    request = json.load(sys.stdin)
    import torch
    from FlagEmbedding import LightWeightFlagLLMReranker
    from FlagEmbedding.inference.reranker.decoder_only.models.gemma_model import (
        CostWiseGemmaForCausalLM,
    )

    checkpoint = request["checkpoint"]
    reranker = LightWeightFlagLLMReranker(checkpoint, use_fp16=False, devices=["cpu"])
    models = {reranker.model.config._attn_implementation: reranker.model}
    results = []
    for job in request["jobs"]:
        job = dict(job)
        implementation = job.pop("attn_implementation", "sdpa")
        if implementation not in models:
            models[implementation] = CostWiseGemmaForCausalLM.from_pretrained(
                checkpoint, torch_dtype=torch.float32, attn_implementation=implementation
            )
        reranker.model = models[implementation]
        pairs = [list(pair) for pair in job.pop("pairs")]
        if job.pop("kind", "flag") == "inputs":
            results.append(record_inputs(reranker, pairs, job))
            continue
        scores = reranker.compute_score(pairs, **job)
        if scores and isinstance(scores[0], list):
            results.append([[float(score) for score in layer] for layer in scores])
        else:
            results.append([float(score) for score in scores])
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
