"""The service's SciFact numbers equal a direct `model.encode` + exact search on the same subset.

A subset (20 judged test queries, their relevant abstracts and other abstracts up to 100), read
from ../shared/data, goes through the real ingestion and search paths with documents truncated
as MTEB truncates them (`--truncate`); the reference embeds `title + " " + text` with the same
SentenceTransformer and ranks by exact inner products in numpy. The full run is documented in
docs/quality.md.
"""

import numpy as np
import pytest

from search_service.evaluation import EvalOptions, evaluate, run_evaluation
from search_service.store.db import migrate
from tests.evaluation.dataset import NO_SCIFACT, SCIFACT, scifact_subset

pytestmark = pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason=NO_SCIFACT)


def direct_run(model, dataset, depth=100):
    documents = model.encode([d.full_text for d in dataset.corpus], batch_size=16, normalize_embeddings=True,
                             convert_to_numpy=True)
    queries = model.encode(list(dataset.queries.values()), batch_size=16, normalize_embeddings=True,
                           convert_to_numpy=True)
    scores = queries.astype(np.float64) @ documents.astype(np.float64).T
    run = {}
    for row, query_id in enumerate(dataset.queries):
        best = np.argsort(-scores[row], kind="stable")[:depth]
        run[query_id] = {dataset.corpus[j].id: float(scores[row, j]) for j in best}
    return run


def test_service_ndcg_equals_direct_encode_and_exact_search(tmp_path, make_services, minilm_embedder):
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    services = make_services(url)
    dataset = scifact_subset()
    options = EvalOptions(truncate=True, stages=("dense",), progress=False)
    (section,) = run_evaluation(services, [(dataset, "scifact-subset")], options)["datasets"]
    assert section["ingestion"]["truncated_to_tokens"] == 254
    assert section["ingestion"]["chunks"] == section["ingestion"]["documents"] == len(dataset.corpus)

    service = section["stages"]["dense"]["metrics"]
    direct = evaluate(dataset.qrels, direct_run(minilm_embedder.model, dataset))
    assert 0.3 < direct["nDCG@10"] < 1.0  # a subset where ranking matters
    for metric, value in direct.items():
        assert service[metric] == pytest.approx(value, abs=1e-3), metric
