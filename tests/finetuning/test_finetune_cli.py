"""`finetune-data` -> `finetune` -> the checkpoint loaded as a reranker by the service, on a small
SciFact slice with the real MiniLM embedder and a tiny random encoder (mechanics, not lift)."""

import json

import pytest
from click.testing import CliRunner

from search_service.cli import main
from search_service.evaluation.beir import load_dataset
from search_service.rerankers.registry import detect_family, is_single_label_classifier
from tests.evaluation.dataset import NO_SCIFACT, SCIFACT

TRAIN_QUERIES, DOCUMENTS, CHARS = 10, 30, 300


def write_slice(folder):
    """The first judged SciFact *train* queries, their documents and others, each text cut short."""
    full = load_dataset(SCIFACT, "train").limited(TRAIN_QUERIES)
    relevant = {doc for judged in full.qrels.values() for doc in judged}
    corpus = [d for d in full.corpus if d.id in relevant]
    corpus += [d for d in full.corpus if d.id not in relevant][: DOCUMENTS - len(corpus)]
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc in corpus:
            handle.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text[:CHARS]}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text in full.queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    rows = [f"{q}\t{d}\t{s}" for q, docs in full.qrels.items() for d, s in docs.items()]
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return folder, full.qrels


@pytest.fixture
def env(tmp_path, minilm_path, minilm_embedder, monkeypatch):
    monkeypatch.setattr("search_service.services.load_embedder", lambda *args, **kwargs: minilm_embedder)
    return {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_DATABASE_URL": f"sqlite:///{tmp_path / 'rag.db'}",
        "RAG_EMBEDDER_MODEL": minilm_path,
        "RAG_RERANKER_MODEL": "none",
        "RAG_DEVICE": "cpu",
    }


def invoke(env, *args):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=NO_SCIFACT)
def test_finetune_data_then_finetune_then_search_with_it_and_resume(env, tmp_path, tiny_reranker_dir):
    folder, qrels = write_slice(tmp_path / "slice")
    assert invoke(env, "migrate").exit_code == 0
    filled = invoke(env, "eval", "--dataset", folder, "--split", "train", "-c", "sf", "--stages", "dense",
                    "-o", tmp_path / "eval")
    assert filled.exit_code == 0, filled.output
    stored = {json.loads(line)["_id"]: json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()}
    texts = {f"{d['title']} {d['text']}".strip(): i for i, d in stored.items()}  # one chunk per document

    data = tmp_path / "data-out"
    mined = invoke(env, "finetune-data", "-c", "sf", "--dataset", folder, "--output", data, "--dev-queries", 3,
                   "--depth", 10, "--seed", 7)
    assert mined.exit_code == 0, mined.output
    train = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    dev = [json.loads(line) for line in (data / "dev.jsonl").read_text().splitlines()]
    assert len(train) == TRAIN_QUERIES - 3 and len(dev) == 3
    for line in train + dev:
        assert {"query", "pos", "neg", "prompt"} <= set(line)
        relevant = {d for d, s in qrels[line["id"]].items() if s > 0}
        assert {texts[p] for p in line["pos"]} == relevant  # positives: the stored chunk texts
        negatives = [texts[n] for n in line["neg"]]
        assert len(negatives) == 4 and not set(negatives) & relevant and len(set(negatives)) == 4
    assert all(len(line["candidates"]) == 10 and line["relevant"] for line in dev)
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["train"] == 7 and manifest["options"]["seed"] == 7 and manifest["documents"] == DOCUMENTS
    again = tmp_path / "again"
    assert invoke(env, "finetune-data", "-c", "sf", "--dataset", folder, "-o", again, "--dev-queries", 3,
                  "--depth", 10, "--seed", 7).exit_code == 0
    assert (again / "train.jsonl").read_bytes() == (data / "train.jsonl").read_bytes()  # seeded
    hybrid = invoke(env, "finetune-data", "-c", "sf", "--dataset", folder, "-o", tmp_path / "hybrid",
                    "--mode", "hybrid", "--dev-queries", 0, "--depth", 10, "--hard-negatives", 2)
    assert hybrid.exit_code == 0, hybrid.output
    lines = [json.loads(line) for line in (tmp_path / "hybrid" / "train.jsonl").read_text().splitlines()]
    assert len(lines) == TRAIN_QUERIES and all(len(line["neg"]) == 3 for line in lines)
    assert (tmp_path / "hybrid" / "dev.jsonl").read_text() == ""

    model = tmp_path / "model"
    common = ["finetune", "--data", data, "--base-model", tiny_reranker_dir, "--output", model,
              "--max-length", 64, "--batch-size", 2, "--save-steps", 2, "--rerank-depth", 10]
    trained = invoke(env, *common, "--max-steps", 2)
    assert trained.exit_code == 0, trained.output
    config = json.loads((model / "config.json").read_text())
    assert is_single_label_classifier(config) and detect_family(config, str(model)) == "encoder"
    report = json.loads((model / "finetune.json").read_text())
    assert report["training"]["steps"] == 2 and report["training"]["pairs"] > 0
    assert report["dev"]["queries"] == 3 and 0 <= report["dev"]["best_dense_weight"] <= 1
    card = (model / "README.md").read_text()
    assert "tiny" in card and "dense weight" in card and "| reranked |" in card
    assert f"Command: `search-service finetune --data {data} --base-model" in card

    # the checkpoint as the service loads it: an RAG_RERANKERS entry, encoder family, a reranked search
    served = invoke({**env, "RAG_RERANKERS": f"ft={model}"}, "search", "sclerosis", "-c", "sf", "--json")
    assert served.exit_code == 0, served.output
    response = json.loads(served.stdout)
    assert response["reranked"] is True and response["reranker"] == "ft"
    assert response["results"][0]["rerank_score"] is not None

    refused = invoke(env, *common, "--max-steps", 4)
    assert refused.exit_code == 1 and "--resume" in refused.output
    resumed = invoke(env, *common, "--max-steps", 4, "--resume")
    assert resumed.exit_code == 0, resumed.output
    report = json.loads((model / "finetune.json").read_text())
    assert report["training"]["steps"] == 4 and report["training"]["resumed"] is True
    state = json.loads((model / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["log_history"][0]["step"] <= 2  # continued the first run's log

    # bad inputs: clear errors, naming the file and line
    judgments = tmp_path / "judgments.jsonl"
    for content, message in [
        ('{"query": "x", "relevant": ["no-such-doc"]}\n', "1 judged document ids are not in collection 'sf'"),
        ('{"query": "x", "relevant": []}\n', f'{judgments}:1: "relevant" is empty'),
        ('{"query": "x", "relevant": ["a"]}\nnot json\n', f"{judgments}:2: not JSON"),
    ]:
        judgments.write_text(content)
        failed = invoke(env, "finetune-data", "-c", "sf", "--judgments", judgments, "-o", tmp_path / "bad",
                        "--dev-queries", 0)
        assert failed.exit_code == 1 and message in failed.output, failed.output
    broken = tmp_path / "broken"
    broken.mkdir()
    for content, message in [('{"query": "x", "pos": [], "neg": ["n"]}\n', '"pos" is empty'),
                             ("{oops\n", "train.jsonl:1: not JSON")]:
        (broken / "train.jsonl").write_text(content)
        failed = invoke(env, "finetune", "--data", broken, "--base-model", tiny_reranker_dir,
                        "-o", tmp_path / "never")
        assert failed.exit_code == 1 and message in failed.output, failed.output
