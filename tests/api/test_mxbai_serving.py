"""mxbai-rerank served: chosen by a `#family=` suffix in RAG_RERANKERS (a Qwen2 checkpoint whose
name says nothing), then `/v1/rerank`, `/v2/rerank`, `/v1/search`, TEI's `/rerank` (left
truncation) and the `rerank` CLI with its per-request options (`prompt`: the instruction;
`query_max_length`), scores equal to the family's.
"""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from search_service.rerankers import sigmoid
from search_service.rerankers.families.mxbai import CHAT_SUFFIX, TASK_PROMPT, MxbaiReranker
from search_service.services import build_services, load_rerankers
from search_service.settings import Settings
from search_service.testing.tiny_qwen import make_tiny_qwen2_reranker
from tests.support.documents import DOCUMENTS, PARAPHRASES

QUERY = "what is panda?"
PASSAGES = [
    "hi",
    "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "Paris is the capital of France.",
]
INSTRUCTION = "Find passages about animals."


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    checkpoint = make_tiny_qwen2_reranker(tmp_path_factory.mktemp("checkpoints") / "qwen2-tiny")
    return f"{checkpoint}#family=mxbai-rerank"


@pytest.fixture(scope="module")
def rerankers(tiny_reranker_dir, source):
    settings = Settings(
        rerankers=(("enc", str(tiny_reranker_dir)), ("mx", source)),
        reranker_model=None,
        device="cpu",
    )
    return load_rerankers(settings)


@pytest.fixture(scope="module")
def mx(rerankers) -> MxbaiReranker:
    reranker = rerankers.pick("mx")
    assert isinstance(reranker, MxbaiReranker)
    return reranker


@pytest.fixture(scope="module")
def client(tmp_path_factory, minilm_path, minilm_embedder, rerankers):
    from search_service.app import create_app
    from search_service.store.db import migrate

    folder = tmp_path_factory.mktemp("mxbai-app")
    url = f"sqlite:///{folder / 'rag.db'}"
    migrate(url)
    settings = Settings(
        data_dir=folder / "data",
        database_url=url,
        embedder_model=minilm_path,
        rerankers=(("enc", "-"), ("mx", "-")),  # already loaded: `rerankers`
        reranker_model=None,
        device="cpu",
        auth="off",
    )
    services = build_services(settings, embedder=minilm_embedder, rerankers=rerankers)
    app = create_app(services=services)
    app.config["TESTING"] = True
    yield app.test_client()
    services.close()


def by_index(results, key="relevance_score") -> list[float]:
    return [score for _, score in sorted((r["index"], r[key]) for r in results)]


def test_v1_and_v2_rerank_give_the_familys_scores(client, mx):
    body = {"model": "mx", "query": QUERY, "documents": PASSAGES, "prompt": INSTRUCTION}
    raw = mx.score(QUERY, PASSAGES, prompt=INSTRUCTION)
    v1 = client.post("/v1/rerank", json=body)
    assert v1.status_code == 200, v1.get_json()
    assert by_index(v1.get_json()["results"]) == pytest.approx([sigmoid(s) for s in raw], abs=1e-6)
    raw_v1 = client.post("/v1/rerank", json={**body, "raw_scores": True}).get_json()
    assert by_index(raw_v1["results"]) == pytest.approx(raw, abs=1e-5)
    v2 = client.post("/v2/rerank", json=body)
    assert v2.status_code == 200, v2.get_json()
    assert v2.get_json()["results"] == [
        {key: result[key] for key in ("index", "relevance_score")}
        for result in v1.get_json()["results"]
    ]
    plain = client.post("/v1/rerank", json={**body, "prompt": None, "raw_scores": True}).get_json()
    assert by_index(plain["results"]) == pytest.approx(mx.score(QUERY, PASSAGES), abs=1e-5)
    assert by_index(plain["results"]) != pytest.approx(raw, abs=1e-3)


def test_options_are_checked_by_the_family(client, mx):
    body = {"model": "mx", "query": QUERY, "documents": PASSAGES}
    refused = client.post("/v1/rerank", json={**body, "cutoff_layers": 2})
    assert refused.status_code == 400
    assert (
        "mxbai-rerank reranker does not support cutoff_layers"
        in refused.get_json()["error"]["message"]
    )
    limit = mx.max_supported_length
    too_long = client.post("/v1/rerank", json={**body, "max_length": limit + 1})
    assert too_long.status_code == 400
    assert f"exceeds the model's limit of {limit}" in too_long.get_json()["error"]["message"]
    listed = {r["name"]: r for r in client.get("/v1/rerankers").get_json()["rerankers"]}
    assert (listed["mx"]["family"], listed["mx"]["options"]) == (
        "mxbai-rerank",
        ["prompt", "query_max_length"],
    )


def test_search_reranks_with_the_family_and_its_options(client, mx):
    from ingestion.pipeline import SourceDocument

    services = client.application.extensions["search_service"]
    services.ingestion.ingest(
        "docs", [SourceDocument(external_id=k, text=v) for k, v in DOCUMENTS.items()]
    )
    query = PARAPHRASES["panda.md"]
    options = {"prompt": INSTRUCTION, "query_max_length": 4}
    body = {"collection": "docs", "query": query, "top_k": 5, "reranker": "mx"}
    response = client.post("/v1/search", json={**body, "rerank_options": options})
    result = response.get_json()
    assert response.status_code == 200, result
    assert result["reranker"] == "mx"
    expected = mx.score(query, [r["text"] for r in result["results"]], **options)
    assert [r["rerank_score"] for r in result["results"]] == pytest.approx(expected, abs=1e-5)


def test_rerank_cli_with_a_family_suffix_and_an_instruction(tiny_reranker_dir, source, mx):
    from search_service.cli import main

    env = {"RAG_RERANKERS": f"enc={tiny_reranker_dir},mx={source}", "RAG_DEVICE": "cpu"}
    arguments = ["rerank", QUERY, *PASSAGES, "--model", "mx", "--prompt", INSTRUCTION, "--json"]
    result = CliRunner().invoke(main, arguments, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)
    assert response["model"] == "mx"
    expected = mx.score(QUERY, PASSAGES, prompt=INSTRUCTION)
    assert by_index(response["results"]) == pytest.approx(expected, abs=1e-5)


def test_tei_left_truncation_keeps_the_end_of_the_document(tmp_path, app_factory, mx):
    from search_service.store.db import migrate

    short = copy.copy(mx)  # the same model with a 64-token pair budget
    short.max_length = 64
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    client = app_factory(url, short).test_client()
    document = " ".join(f"word{i}" for i in range(300)) + " Bees make honey in hives."
    body = {"query": QUERY, "texts": [document, PASSAGES[1]], "raw_scores": True}
    response = client.post("/rerank", json={**body, "truncation_direction": "left"})
    assert response.status_code == 200, response.get_json()
    budget = short.passage_budget(QUERY)
    assert 0 < budget < 64
    encoded = short.text_tokenizer.encode(document, add_special_tokens=False)
    kept = document[encoded.offsets[len(encoded.offsets) - budget][0] :]
    (feature,) = short.tokenize([(QUERY, kept)], 64)
    assert len(feature) <= 64 + short.template.length
    assert short.tokenizer.decode(feature.input_ids).endswith(
        f"Bees make honey in hives.\n{TASK_PROMPT}{CHAT_SUFFIX}"
    )
    expected = dict(enumerate(short.score(QUERY, [kept, PASSAGES[1]])))
    assert {r["index"]: r["score"] for r in response.get_json()} == pytest.approx(
        expected, abs=1e-5
    )
