"""The runner: stages, document merging, truncation like MTEB, loading; with the real MiniLM."""

import inspect
from types import SimpleNamespace

import pytest

from search_service.errors import ConflictError, InvalidRequestError
from search_service.evaluation import EvalOptions, load_dataset, run_evaluation
from search_service.evaluation.fusion_weight import (
    best_weight,
    collect_candidates,
    fused_ranking,
    sweep,
)
from search_service.evaluation.report import markdown
from search_service.evaluation.runner import (
    STAGE_NAMES,
    Stage,
    merge_by_document,
    pipeline_takes_mode,
    prepare_collection,
    select_stages,
    truncate_to_tokens,
)
from search_service.retrieval.pipeline import SearchPipeline
from search_service.store.db import migrate
from tests.evaluation.dataset import TINY_IDS, write_tiny


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    return url


def fake_services(search, rerankers=()):
    pipeline = type("Pipeline", (), {"search": search})()
    pipeline.rerankers = SimpleNamespace(rerankers=dict.fromkeys(rerankers))
    return SimpleNamespace(search=pipeline)


def test_stages_follow_what_the_pipeline_takes():
    def without_mode(self, collection, query, *, top_k, candidates, rerank=None):
        pass

    def with_mode(self, collection, query, *, top_k, candidates, rerank=None, mode="hybrid"):
        pass

    def with_fusion(self, collection, query, *, top_k, candidates, rerank=None, mode="hybrid", rerank_fusion=None):
        pass

    stages, skipped = select_stages(fake_services(without_mode), None)
    assert [s.name for s in stages] == ["dense"]
    assert set(skipped) == {"sparse", "hybrid", "reranked", "reranked-fused"} and "mode='sparse'" in skipped["sparse"]
    stages, skipped = select_stages(fake_services(with_mode, rerankers=["r"]), None)
    assert [s.name for s in stages] == list(STAGE_NAMES[:-1])
    assert skipped == {"reranked-fused": "the search pipeline has no rerank_fusion="}
    # the fused stage needs a weight above 0: from the options, else the pipeline's default
    stages, skipped = select_stages(fake_services(with_fusion, rerankers=["r"]), None)
    assert "reranked-fused" in skipped and "--rerank-fusion-weight" in skipped["reranked-fused"]
    stages, skipped = select_stages(fake_services(with_fusion, rerankers=["r"]), None, 0.4)
    assert [s.name for s in stages] == list(STAGE_NAMES) and skipped == {}
    with pytest.raises(InvalidRequestError, match="cannot run stage reranked-fused"):
        select_stages(fake_services(with_fusion, rerankers=["r"]), ["dense", "reranked-fused"])
    assert Stage("reranked", mode="dense", rerank=True).search_options(True, 0.4) == {"rerank": True, "mode": "dense", "rerank_fusion": 0.0}
    assert Stage("f", mode="dense", rerank=True, fused=True).search_options(True, 0.4)["rerank_fusion"] == 0.4
    with pytest.raises(InvalidRequestError, match="cannot run stage hybrid"):
        select_stages(fake_services(without_mode), ["dense", "hybrid"])
    # with mode=, the dense stage asks for dense explicitly (the pipeline's default may be hybrid)
    assert Stage("dense", mode="dense").search_options(True) == {"rerank": False, "mode": "dense"}
    assert Stage("dense", mode="dense").search_options(False) == {"rerank": False}
    expected = "mode" in inspect.signature(SearchPipeline.search).parameters
    assert pipeline_takes_mode(SearchPipeline.__new__(SearchPipeline)) is expected


def test_merge_keeps_each_document_at_its_best_chunk():
    results = [{"document_id": "a", "score": 0.9}, {"document_id": "b", "score": 0.8},
               {"document_id": "a", "score": 0.7}, {"document_id": "c", "score": 0.6}]
    assert merge_by_document(results) == [("a", 0.9), ("b", 0.8), ("c", 0.6)]


def test_truncation_keeps_exactly_the_tokens_the_model_reads(minilm_embedder):
    tokenizer = minilm_embedder.tokenizer
    limit = minilm_embedder.max_seq_length - minilm_embedder.num_special_tokens
    long = "Unbelievably, transcriptomic heterogeneity " * 80
    short = "A short abstract."
    cut_long, cut_short = truncate_to_tokens(tokenizer, [long, short], limit)
    assert cut_short == short
    kept = tokenizer(cut_long, add_special_tokens=False)["input_ids"]
    full = tokenizer(long, add_special_tokens=False)["input_ids"]
    assert len(full) > limit and kept == full[:limit]
    model_input = tokenizer(long, truncation=True, max_length=minilm_embedder.max_seq_length)["input_ids"]
    assert model_input[1:-1] == kept  # what sentence-transformers feeds the model, minus [CLS]/[SEP]


def test_loader_drops_query_metadata_and_keeps_judged_queries(tmp_path):
    dataset = load_dataset(write_tiny(tmp_path / "tiny"))
    assert dataset.name == "tiny" and len(dataset.corpus) == len(TINY_IDS)
    assert dataset.queries["q-panda.md"].startswith("What food")
    assert dataset.corpus[0].full_text.startswith("Giant panda The giant panda")
    assert dataset.qrels["q-both"] == {"panda.md": 1, "coffee.txt": 1}
    assert dataset.limited(2).queries.keys() == {"q-panda.md", "q-volcano.txt"}


def test_reranked_stage_runs_the_configured_reranker(tmp_path, sqlite_url, make_services, tiny_reranker):
    services = make_services(sqlite_url, tiny_reranker)
    dataset = load_dataset(write_tiny(tmp_path / "tiny"))
    report = run_evaluation(services, [(dataset, "tiny")], EvalOptions(progress=False, stages=("dense", "reranked")), command="test")
    (section,) = report["datasets"]
    assert "dense" in section["stages"] and "reranked" in section["stages"]
    assert report["settings"]["reranker_model"] == "tiny-reranker"
    assert section["stages"]["dense"]["metrics"]["Recall@10"] == 1.0
    # every stage ranks all four documents; the random-weight reranker orders them its own way
    assert all(len(docs) == len(TINY_IDS) for docs in section["runs"]["reranked"].values())
    documents = {d for docs in section["runs"]["reranked"].values() for d, _ in docs}
    assert documents == set(TINY_IDS)


def test_fused_stage_is_paired_with_dense_and_the_weight_sweep_reproduces_it(tmp_path, sqlite_url, make_services, tiny_reranker):
    services = make_services(sqlite_url, tiny_reranker)
    dataset = load_dataset(write_tiny(tmp_path / "tiny"))
    options = EvalOptions(progress=False, stages=("dense", "reranked", "reranked-fused"), rerank_fusion_weight=0.5,
                          bootstrap_resamples=1_000)
    (section,) = run_evaluation(services, [(dataset, "tiny")], options, command="test")["datasets"]
    stages = section["stages"]
    assert "paired" not in stages["dense"] and stages["reranked-fused"]["rerank_fusion_dense_weight"] == 0.5
    for name in ("reranked", "reranked-fused"):
        paired = stages[name]["paired"]
        assert paired["baseline"] == "dense" and paired["metric"] == "nDCG@10" and paired["resamples"] == 1_000
        assert paired["wins"] + paired["losses"] + paired["ties"] == len(dataset.queries)
        assert paired["ci95"][0] <= paired["mean_difference"] <= paired["ci95"][1]
        gap = stages[name]["metrics"]["nDCG@10"] - stages["dense"]["metrics"]["nDCG@10"]
        assert paired["mean_difference"] == pytest.approx(gap, abs=2e-5)
    report = markdown({"created": "now", "command": "test", "settings": {"embedder_model": "m", "reranker_model": "r"},
                       "datasets": [{k: v for k, v in section.items() if k != "runs"}]})
    assert "Paired against `dense` on nDCG@10" in report and "| reranked-fused (dense weight 0.5) |" in report
    # one reranking pass, fused offline for each weight, gives the pipeline's own rankings
    candidates = collect_candidates(services, "tiny", dataset.queries, depth=options.depth, progress=False)
    for weight, name in ((0.0, "reranked"), (0.5, "reranked-fused")):
        assert {q: fused_ranking(c, weight) for q, c in candidates.items()} == {
            q: [doc for doc, _ in docs] for q, docs in section["runs"][name].items()}
    scores = dict(sweep(dataset.qrels, candidates, (0.0, 0.5)))
    assert scores[0.0] == pytest.approx(stages["reranked"]["metrics"]["nDCG@10"], abs=1e-4)
    assert scores[0.5] == pytest.approx(stages["reranked-fused"]["metrics"]["nDCG@10"], abs=1e-4)
    assert best_weight(dataset.qrels, candidates, (0.0, 0.5)) == max(scores.items(), key=lambda kv: (kv[1], -kv[0]))


def test_refuses_a_collection_holding_other_documents(tmp_path, sqlite_url, make_services):
    from ingestion.pipeline import SourceDocument

    services = make_services(sqlite_url)
    services.ingestion.ingest("mine", [SourceDocument(external_id="x", text="user data")])
    dataset = load_dataset(write_tiny(tmp_path / "tiny"))
    with pytest.raises(ConflictError, match="already holds 1 documents"):
        prepare_collection(services, dataset, "mine", EvalOptions(progress=False))
    with pytest.raises(ConflictError, match="does not hold exactly the corpus"):
        prepare_collection(services, dataset, "mine", EvalOptions(progress=False, reuse=True))


def test_truncate_makes_one_chunk_of_what_the_embedder_reads(tmp_path, sqlite_url, make_services):
    services = make_services(sqlite_url)
    dataset = load_dataset(write_tiny(tmp_path / "tiny"))
    info = prepare_collection(services, dataset, "cut", EvalOptions(truncate=True, progress=False))
    limit = services.embedder.max_seq_length - services.embedder.num_special_tokens
    assert info["truncated_to_tokens"] == info["chunk_tokens"] == limit
    assert info["chunks"] == info["documents"] == len(TINY_IDS)


def test_progress_bars_go_to_stderr_only_when_on(tmp_path, sqlite_url, make_services, capfd):
    services = make_services(sqlite_url)
    dataset = load_dataset(write_tiny(tmp_path / "tiny"))
    queries = len(dataset.queries)
    # progress is on by default
    run_evaluation(services, [(dataset, "loud")], EvalOptions(stages=("dense",)))
    out, err = capfd.readouterr()
    assert "tiny dense: 100%" in err and f"{queries}/{queries}" in err
    assert "query" in err  # the unit: query/s or s/query
    assert "tiny dense" not in out
    run_evaluation(services, [(dataset, "quiet")], EvalOptions(stages=("dense",), progress=False))
    out, err = capfd.readouterr()
    assert "tiny dense" not in err and "%|" not in err and "tiny dense" not in out
