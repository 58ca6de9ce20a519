"""The qwen3-reranker family end to end: /v1/rerank, /v2/rerank and /v1/search with its
instruction (`prompt`), batched as served, and the `rerank` CLI choosing it by `#family=`."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from search_service.rerankers import load_reranker
from search_service.rerankers.families.qwen3 import SUFFIX
from search_service.testing.tiny_qwen import make_tiny_qwen3_reranker

QUERY = "who makes honey"
PASSAGES = ["Bees make honey in hives.", "Owls hunt at night.", "", "熊猫吃竹子,也吃少量的肉。"]
INSTRUCTION = "Given a question about animals, find the passage that answers it"


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return make_tiny_qwen3_reranker(tmp_path_factory.mktemp("checkpoints") / "Qwen3-Reranker-tiny")


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return load_reranker(qwen3_dir, device="cpu")


@pytest.fixture
def client(tmp_path, app_factory, qwen3):
    from ingestion.pipeline import SourceDocument
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    app = app_factory(url, qwen3)  # RAG_BATCHING=on: scored through the batch scheduler
    documents = [SourceDocument(external_id=f"d{i}", text=t) for i, t in enumerate(PASSAGES[:2])]
    app.extensions["search_service"].ingestion.ingest("docs", documents)
    return app.test_client()


def by_index(results, key="relevance_score"):
    return [score for _, score in sorted((r["index"], r[key]) for r in results)]


def test_rerank_v1_and_v2_with_an_instruction(client, qwen3):
    for options in ({}, {"prompt": INSTRUCTION}, {"prompt": INSTRUCTION, "max_length": 70}):
        body = {"query": QUERY, "documents": PASSAGES, **options}
        v1 = client.post("/v1/rerank", json={**body, "raw_scores": True})
        assert v1.status_code == 200, v1.get_json()
        expected = qwen3.score(QUERY, PASSAGES, **options)
        assert by_index(v1.get_json()["results"]) == pytest.approx(expected, abs=1e-5)
        v2 = client.post("/v2/rerank", json={**body, "model": "tiny-reranker"})
        assert v2.status_code == 200, v2.get_json()
        probabilities = qwen3.score(QUERY, PASSAGES, normalize=True, **options)
        assert by_index(v2.get_json()["results"]) == pytest.approx(probabilities, abs=1e-5)
    assert expected != pytest.approx(qwen3.score(QUERY, PASSAGES), abs=1e-3)
    listing = client.get("/v1/rerankers").get_json()["rerankers"]
    assert [(r["family"], r["options"]) for r in listing] == [("qwen3-reranker", ["prompt"])]


def test_search_reranks_with_the_instruction(client, qwen3):
    for options in ({}, {"prompt": INSTRUCTION}):
        body = {"collection": "docs", "query": QUERY, "rerank_options": options or None}
        response = client.post("/v1/search", json={k: v for k, v in body.items() if v})
        found = response.get_json()
        assert response.status_code == 200, found
        assert found["reranked"] is True
        texts = [r["text"] for r in found["results"]]
        scores = [r["rerank_score"] for r in found["results"]]
        assert sorted(texts) == sorted(PASSAGES[:2])
        assert scores == pytest.approx(qwen3.score(QUERY, texts, **options), abs=1e-5)
        assert scores == sorted(scores, reverse=True)


def test_refused_options_are_400s(client):
    for options, fragment in [
        ({"query_max_length": 8}, "does not support query_max_length"),
        ({"cutoff_layers": 2}, "does not support cutoff_layers"),
        ({"prompt": ""}, "prompt"),
    ]:
        body = {"query": QUERY, "documents": PASSAGES, **options}
        response = client.post("/v1/rerank", json=body)
        assert response.status_code == 400, response.get_json()
        assert fragment in response.get_json()["error"]["message"]


def test_cli_rerank_chooses_the_family_by_suffix(qwen3, qwen3_dir, tmp_path):
    plain = tmp_path / "my-reranker"  # a name that says nothing: the suffix chooses
    shutil.copytree(qwen3_dir, plain)
    env = {"RAG_RERANKERS": f"q={plain}#family=qwen3-reranker", "RAG_DEVICE": "cpu"}
    env["HF_HUB_OFFLINE"] = "1"
    args = ["rerank", QUERY, *PASSAGES, "--json", "--prompt", INSTRUCTION]
    from search_service.cli import main

    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)
    assert response["model"] == "q"
    expected = qwen3.score(QUERY, PASSAGES, prompt=INSTRUCTION)
    assert by_index(response["results"]) == pytest.approx(expected, abs=1e-5)


def test_tei_left_truncation_keeps_the_end_of_the_document(tmp_path, app_factory, qwen3):
    import copy

    from search_service.store.db import migrate

    short = copy.copy(qwen3)  # the same model, a 128-token budget: the template takes about half
    short.max_length = 128
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    client = app_factory(url, short).test_client()
    document = " ".join(f"word{i}" for i in range(300)) + " Bees make honey in hives."
    body = {"query": QUERY, "texts": [document, PASSAGES[1]], "raw_scores": True}
    response = client.post("/rerank", json={**body, "truncation_direction": "left"})
    assert response.status_code == 200, response.get_json()
    budget = short.passage_budget(QUERY)
    assert 0 < budget < 128
    encoded = short.text_tokenizer.encode(document, add_special_tokens=False)
    kept = document[encoded.offsets[len(encoded.offsets) - budget][0] :]
    (feature,) = short.tokenize([(QUERY, kept)], 128)
    assert short.tokenizer.decode(feature.input_ids).endswith("Bees make honey in hives." + SUFFIX)
    expected = dict(enumerate(short.score(QUERY, [kept, PASSAGES[1]])))
    assert {r["index"]: r["score"] for r in response.get_json()} == pytest.approx(
        expected, abs=1e-5
    )
