"""Runs inside the reference env: FlagEmbedding's FlagReranker scores, JSON on stdin and stdout.

Input: {"checkpoint": dir, "jobs": [{"pairs": [[q, p], ...], "normalize": bool, **kwargs}]}
(kwargs go to compute_score).
Output: one list of scores per job. Loads the model once for all jobs.
"""

import json
import logging
import sys


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    request = json.load(sys.stdin)
    from FlagEmbedding import FlagReranker

    reranker = FlagReranker(request["checkpoint"], use_fp16=False, devices=["cpu"])
    results = []
    for job in request["jobs"]:
        job = dict(job)
        pairs = [list(pair) for pair in job.pop("pairs")]
        scores = reranker.compute_score(pairs, **job)
        results.append([float(score) for score in scores])
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
