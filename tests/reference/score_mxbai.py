"""Runs inside the mxbai-rerank reference env (mxbai-rerank 0.1.6, transformers 4.57.6, CPU).

Input: {"checkpoint": dir, "jobs": [job, ...]}; output: one result per job. A model loads once
per checkpoint and `max_length` (`MxbaiRerankV2(checkpoint, device="cpu", max_length=...)`, fp32
on CPU); a job may name its own "checkpoint".
- {"kind": "predict", "pairs": [[q, d], ...], "instruction": null, "max_length": 8192,
  "normalize": false} -> `predict(queries, documents, instruction=..., normalize=...)`: all the
  pairs in ONE padded batch (mixed lengths, left padding).
- {"kind": "each", "pairs": ..., "instruction": null, "max_length": 8192} -> the score of each
  pair alone and unpadded: `forward` on the ids `prepare_inputs` builds, without the padding it
  adds (to a multiple of 8, on the left), so positions start at 0 on the first token. `predict`
  numbers positions from the first pad, so its scores move with the padding (RoPE rounding).
- {"kind": "rank", "query": q, "documents": [...], "batch_size": 4, "instruction": null,
  "max_length": 8192} -> one score per document, in order, from `rank(..., sort=False)` (the
  package's own batching: length buckets of `batch_size`).
- {"kind": "inputs", "pairs": ..., "instruction": null, "max_length": 8192} -> per pair, the
  unpadded input ids `prepare_inputs` builds (attention mask 1), and {"max_length": the
  instance's max_length after its clipping, "yes": id of "1", "no": id of "0"} as the last item.
"""

import json
import logging
import sys


def main() -> None:
    logging.disable(logging.WARNING)
    import torch
    from mxbai_rerank import MxbaiRerankV2

    torch.manual_seed(0)
    payload = json.load(sys.stdin)
    checkpoint = payload["checkpoint"]
    models = {}

    def model(path, max_length):
        if (path, max_length) not in models:
            models[path, max_length] = MxbaiRerankV2(
                path, device="cpu", torch_dtype=torch.float32, max_length=max_length
            )
        return models[path, max_length]

    results = []
    for job in payload["jobs"]:
        reranker = model(job.get("checkpoint", checkpoint), job.get("max_length", 8192))
        instruction = job.get("instruction")
        if job["kind"] == "predict":
            queries = [query for query, _ in job["pairs"]]
            documents = [document for _, document in job["pairs"]]
            scores = reranker.predict(
                queries, documents, instruction=instruction, normalize=job.get("normalize", False)
            )
            results.append([float(score) for score in scores.reshape(-1).tolist()])
        elif job["kind"] == "each":
            scores = []
            for query, document in job["pairs"]:
                batch = reranker.prepare_inputs([query], [document], instruction=instruction)
                ids = batch["input_ids"][:, batch["attention_mask"][0].bool()]
                output = reranker.forward(input_ids=ids, attention_mask=torch.ones_like(ids))
                scores.append(float(output.logits.reshape(-1)[0]))
            results.append(scores)
        elif job["kind"] == "rank":
            ranked = reranker.rank(
                job["query"],
                job["documents"],
                top_k=len(job["documents"]),
                batch_size=job["batch_size"],
                sort=False,
                return_documents=False,
                instruction=instruction,
            )
            scores = [None] * len(job["documents"])
            for result in ranked:
                scores[result.index] = float(result.score)
            results.append(scores)
        elif job["kind"] == "inputs":
            rows = []
            for query, document in job["pairs"]:
                batch = reranker.prepare_inputs([query], [document], instruction=instruction)
                ids = batch["input_ids"][0][batch["attention_mask"][0].bool()]
                rows.append(ids.tolist())
            rows.append(
                {"max_length": reranker.max_length, "yes": reranker.yes_loc, "no": reranker.no_loc}
            )
            results.append(rows)
        else:
            raise ValueError(f"unknown job kind {job['kind']!r}")
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
