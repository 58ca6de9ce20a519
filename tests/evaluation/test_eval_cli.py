"""`search-service eval` end to end on a tiny BEIR dataset the test writes (real MiniLM)."""

import json

import pytest
from click.testing import CliRunner

from search_service.cli import main
from search_service.evaluation.runner import pipeline_takes_mode
from search_service.retrieval.pipeline import SearchPipeline
from tests.evaluation.dataset import TINY_IDS, write_tiny

METRICS = ["nDCG@10", "Recall@10", "Recall@50", "Recall@100", "MRR@10"]


@pytest.fixture
def env(tmp_path, database_url, minilm_path, minilm_embedder, monkeypatch):
    # every command builds its services as usual, but gets the session's loaded MiniLM
    monkeypatch.setattr("search_service.services.load_embedder", lambda *args, **kwargs: minilm_embedder)
    return {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_DATABASE_URL": database_url,
        "RAG_EMBEDDER_MODEL": minilm_path,
        "RAG_RERANKER_MODEL": "none",
        "RAG_DEVICE": "cpu",
    }


def invoke(env, *args):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_eval_fills_scores_refuses_a_filled_collection_and_reingests(env, tmp_path):
    dataset = write_tiny(tmp_path / "tiny")
    out = tmp_path / "out"
    assert invoke(env, "migrate").exit_code == 0

    result = invoke(env, "eval", "--dataset", str(dataset), "--collection", "tiny", "--output", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    (section,) = report["datasets"]
    assert section["dataset"] == "tiny" and section["queries"] == 5
    assert section["ingestion"]["action"] == "created"
    assert section["ingestion"]["documents"] == len(TINY_IDS) and section["ingestion"]["failed"] == 0
    lexical = ["sparse", "hybrid"] if pipeline_takes_mode(SearchPipeline.__new__(SearchPipeline)) else []
    assert list(section["stages"]) == ["dense", *lexical]  # every stage that can run here
    assert "reranked" in section["skipped"]
    metrics = section["stages"]["dense"]["metrics"]
    assert list(metrics) == METRICS
    assert metrics["Recall@10"] == 1.0  # four documents: everything is retrieved
    assert metrics["MRR@10"] >= 0.8  # paraphrases find their document first
    table = (out / "eval.md").read_text()
    assert "| stage | nDCG@10 | Recall@10 | Recall@50 | Recall@100 | MRR@10 | ms/query |" in table
    assert f"| dense | {metrics['nDCG@10']:.4f} |" in table and "| reranked | –" in table
    assert table in result.stdout
    assert report["command"].startswith("search-service eval --dataset ")
    run = (out / "runs" / "tiny.dense.trec").read_text().splitlines()
    assert run[0].split()[:4] == ["q-panda.md", "Q0", "panda.md", "1"]

    assert "embedding 4 chunks of 4 documents: about " in result.stderr  # said before embedding
    assert section["ingestion"]["estimated_seconds"] > 0

    again = invoke(env, "eval", "--dataset", str(dataset), "--collection", "tiny", "--output", str(out))
    assert again.exit_code == 0, again.output  # the same corpus, same sizes: reused, not refilled
    assert json.loads((out / "eval.json").read_text())["datasets"][0]["ingestion"]["action"] == "reused"
    assert "embedding" not in again.stderr

    refused = invoke(env, "eval", "--dataset", str(dataset), "--collection", "tiny", "--output", str(out),
                     "--chunk-tokens", "32", "--chunk-overlap", "4")
    assert refused.exit_code == 1
    assert "already holds 4 documents" in refused.output and "--reingest" in refused.output
    other = write_tiny(tmp_path / "other")
    with (other / "corpus.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": "extra", "title": "", "text": "Something else entirely."}) + "\n")
    refused = invoke(env, "eval", "--dataset", str(other), "--collection", "tiny", "--output", str(out))
    assert refused.exit_code == 1 and "not exactly the corpus of other" in refused.output

    reused = invoke(env, "eval", "--dataset", str(dataset), "-c", "tiny", "-o", str(out), "--reuse",
                    "--stages", "dense", "--limit-queries", "2")
    assert reused.exit_code == 0, reused.output
    again = json.loads((out / "eval.json").read_text())["datasets"][0]
    assert again["ingestion"]["action"] == "reused" and again["queries"] == 2

    redone = invoke(env, "eval", "--dataset", str(dataset), "-c", "tiny", "-o", str(out), "--reingest",
                    "--chunk-tokens", "32", "--chunk-overlap", "4", "--stages", "dense")
    assert redone.exit_code == 0, redone.output
    section = json.loads((out / "eval.json").read_text())["datasets"][0]
    assert section["ingestion"]["action"] == "reingested"
    assert section["ingestion"]["chunk_tokens"] == 32
    chunks = section["ingestion"]["chunks"]
    assert chunks > len(TINY_IDS)  # small chunks: several per document

    counted = invoke(env, "eval", "--dataset", str(dataset), "-c", "tiny", "-o", str(out), "--reuse",
                     "--stages", "dense", "--limit-queries", "1")
    stored = json.loads((out / "eval.json").read_text())["datasets"][0]["ingestion"]
    assert counted.exit_code == 0 and (stored["documents"], stored["chunks"]) == (len(TINY_IDS), chunks)


def test_eval_rejects_bad_requests(env, tmp_path):
    dataset = write_tiny(tmp_path / "tiny")
    assert invoke(env, "migrate").exit_code == 0
    for args, message in [
        (["--stages", "dense,bogus"], "unknown stage 'bogus'"),
        (["--stages", "reranked"], "no reranker is configured"),
        (["--stages", "dense,reranked-fused", "--rerank-fusion-weight", "0.3"], "no reranker is configured"),
        (["--reingest", "--reuse"], "exclude each other"),
        (["--split", "dev"], "dev.tsv is missing"),
    ]:
        result = invoke(env, "eval", "--dataset", str(dataset), "-c", "tiny", "-o", str(tmp_path / "o"), *args)
        assert result.exit_code == 1, args
        assert message in result.output, (args, result.output)
    out_of_range = invoke(env, "eval", "--dataset", str(dataset), "-c", "tiny", "--rerank-fusion-weight", "1.5")
    assert out_of_range.exit_code == 2 and "1.5 is not in the range" in out_of_range.output


def test_eval_corpus_sample_keeps_judged_documents_and_says_so(env, tmp_path):
    dataset = write_tiny(tmp_path / "tiny")
    with (dataset / "corpus.jsonl").open("a", encoding="utf-8") as handle:
        for i in range(30):
            handle.write(json.dumps({"_id": f"filler-{i}", "title": "", "text": f"Filler note number {i}."}) + "\n")
    out = tmp_path / "out"
    assert invoke(env, "migrate").exit_code == 0
    args = ["eval", "--dataset", str(dataset), "-c", "sampled", "-o", str(out), "--stages", "dense",
            "--limit-queries", "2", "--corpus-sample", "6", "--seed", "3"]
    result = invoke(env, *args)
    assert result.exit_code == 0, result.output
    section = json.loads((out / "eval.json").read_text())["datasets"][0]
    assert (section["corpus_documents"], section["corpus_sampled_from"]) == (6, 34)
    assert section["ingestion"]["documents"] == 6
    assert "a sample of 6 of its 34 documents" in result.stderr and "not comparable" in result.stderr
    assert "Corpus sampled: 6 of 34 documents" in (out / "eval.md").read_text()
    runs = (out / "runs" / "tiny.dense.trec").read_text().splitlines()
    retrieved = {line.split()[2] for line in runs}
    assert {"panda.md", "volcano.txt"} <= retrieved  # the two chosen queries' judged documents
    fillers = retrieved - set(TINY_IDS)
    assert len(fillers) == 4  # the seeded sample of the rest, no more

    again = invoke(env, *args)  # the same seed draws the same sample: reused as it is
    assert again.exit_code == 0, again.output
    assert json.loads((out / "eval.json").read_text())["datasets"][0]["ingestion"]["action"] == "reused"
