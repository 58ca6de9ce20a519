"""BEIR's retrieval metrics, computed by pytrec_eval (trec_eval), as BEIR and MTEB do.

* nDCG@k: trec_eval `ndcg_cut.k` (linear gain, the graded qrels score).
* Recall@k: trec_eval `recall.k` (judgments with score >= 1 count as relevant).
* MRR@k: trec_eval `recip_rank` over the run cut to its top k. That is BEIR's `mrr@k`: the
  reciprocal rank of the first relevant document among the first k, 0 when there is none.

The run is ordered as trec_eval orders it: by score, descending. Every judged query is scored:
a query the system returned nothing for counts as 0, it is not dropped from the mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from search_service.errors import ConfigurationError

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

# Metric name -> (trec_eval measure, its key in pytrec_eval's answer, cut the run to k first).
METRICS: dict[str, tuple[str, str, int | None]] = {
    "nDCG@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "Recall@10": ("recall.10", "recall_10", None),
    "Recall@50": ("recall.50", "recall_50", None),
    "Recall@100": ("recall.100", "recall_100", None),
    "MRR@10": ("recip_rank", "recip_rank", 10),
}
DEFAULT_METRICS = tuple(METRICS)


def require_pytrec_eval():
    """The pytrec_eval module, or a ConfigurationError that says how to install it."""
    try:
        import pytrec_eval
    except ImportError:
        raise ConfigurationError(
            "the evaluation metrics need pytrec_eval: pip install 'search-service[eval]' "
            "(which installs pytrec-eval-terrier)"
        ) from None
    return pytrec_eval


def top(run: Run, k: int) -> dict[str, dict[str, float]]:
    """Each query's k best documents, in trec_eval's order (score descending, then id descending)."""
    cut = {}
    for query, scores in run.items():
        ranked = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
        cut[query] = dict(ranked[:k])
    return cut


def per_query(qrels: Qrels, run: Run, metrics=DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """metric -> {query id: value} for every query in `qrels`."""
    pytrec_eval = require_pytrec_eval()
    qrels = {q: {d: int(s) for d, s in docs.items()} for q, docs in qrels.items()}
    full = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in qrels}
    by_cut: dict[int | None, list[str]] = {}
    for name in metrics:
        by_cut.setdefault(METRICS[name][2], []).append(name)
    values: dict[str, dict[str, float]] = {}
    for cut, names in by_cut.items():
        measures = {METRICS[name][0] for name in names}
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures)
        results = evaluator.evaluate(full if cut is None else top(full, cut))
        for name in names:
            key = METRICS[name][1]
            values[name] = {q: float(results.get(q, {}).get(key, 0.0)) for q in qrels}
    return values


def evaluate(qrels: Qrels, run: Run, metrics=DEFAULT_METRICS) -> dict[str, float]:
    """metric -> mean over every query in `qrels` (BEIR's averaging)."""
    return {name: float(np.mean(list(values.values()))) if values else 0.0
            for name, values in per_query(qrels, run, metrics).items()}
