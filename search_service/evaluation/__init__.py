"""Retrieval quality on BEIR-format datasets, measured through the service's own paths.

`beir` loads corpus, queries and qrels; `metrics` computes BEIR's metrics with pytrec_eval;
`runner` ingests the corpus and runs the queries stage by stage; `report` writes JSON, markdown
and TREC runs. The CLI command is `search-service eval` (docs/quality.md).
"""

from search_service.evaluation.beir import Dataset, load_dataset
from search_service.evaluation.metrics import DEFAULT_METRICS, evaluate
from search_service.evaluation.runner import STAGES, EvalOptions, Stage, run_evaluation

__all__ = ["DEFAULT_METRICS", "STAGES", "Dataset", "EvalOptions", "Stage", "evaluate", "load_dataset", "run_evaluation"]
