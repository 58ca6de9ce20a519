"""The contract every reranker family and runtime keeps, checked on each of them with one set of
tests (`CONTRACT_RERANKERS` in conftest.py: the encoder padded, packed, in ONNX Runtime fp32 and
int8; llm; layerwise; lightweight; qwen3-reranker; mxbai-rerank). Family-specific behaviour
(reference parity, options that change scores, model code) stays in the family's own test file.
"""

from __future__ import annotations

import math

import pytest

from search_service.errors import ConfigurationError
from search_service.rerankers import Reranker, sigmoid
from tests.rerankers.conftest import CONTRACT_RERANKERS

QUERY = "what is panda?"
PASSAGES = [
    "hi",
    "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "Paris is the capital of France.",
    "",
    "大熊猫主要吃竹子,也吃少量的肉。",
    "Bears eat bamboo, fish, honey and berries.",
]
# Padding is masked, so batch-mates change a score only by float rounding. The llm family pads on
# the left, which moves RoPE positions (1e-4); int8 ONNX quantizes activations per batch, with
# one scale per batch (the tiny model's wide weights drift about 0.1). mxbai-rerank pads on the
# left too but numbers each row's positions from its first token; its masked attention still runs
# other kernels than a lone row's, 1.6e-5 apart on an AVX-512 CPU (AMD EPYC Zen 4).
TOLERANCE = {"llm": 1e-4, "mxbai-rerank": 1e-4, "encoder-onnx": 1e-4, "encoder-onnx-int8": 0.25}
# One valid value of every per-call option some family takes (`cutoff_layers`: see `_options`).
OPTION_VALUES = {
    "prompt": "Does passage B answer query A? Yes or No.",
    "query_max_length": 8,
    "cutoff_layers": None,
    "compress_ratio": 2,
    "compress_layers": [1],
}


@pytest.fixture(scope="module", params=list(CONTRACT_RERANKERS))
def reranker(request) -> Reranker:
    return request.getfixturevalue(CONTRACT_RERANKERS[request.param])


@pytest.fixture
def tolerance(reranker, request) -> float:
    name = request.node.callspec.params["reranker"]
    return TOLERANCE.get(name, 1e-5)


def test_empty_input_gives_empty_results(reranker):
    assert reranker.score(QUERY, []) == []
    assert reranker.score_pairs([]) == []
    assert reranker.rank(QUERY, [], top_n=3) == []


def test_a_single_passage(reranker):
    (score,) = reranker.score(QUERY, [PASSAGES[1]])
    assert isinstance(score, float) and math.isfinite(score)
    assert reranker.score_pairs([(QUERY, PASSAGES[1])]) == [score]
    (normalized,) = reranker.score(QUERY, [PASSAGES[1]], normalize=True)
    assert normalized == pytest.approx(sigmoid(score), abs=1e-6)
    assert reranker.rank(QUERY, [PASSAGES[1]]) == [(0, score)]


def test_duplicates_are_scored_once(reranker, monkeypatch, tolerance):
    tokenized = []
    tokenize = reranker.tokenize

    def counting(pairs, *args, **kwargs):
        tokenized.append(len(pairs))
        return tokenize(pairs, *args, **kwargs)

    monkeypatch.setattr(reranker, "tokenize", counting)
    scores = reranker.score(QUERY, [PASSAGES[1], PASSAGES[2], PASSAGES[1], PASSAGES[2]])
    assert tokenized == [2]
    assert scores[0] == scores[2] and scores[1] == scores[3]
    assert scores[:2] == pytest.approx(reranker.score(QUERY, PASSAGES[1:3]), abs=tolerance)


def test_rank_orders_by_score_and_keeps_ties_in_input_order(reranker):
    passages = [*PASSAGES, PASSAGES[1]]  # a duplicate: the same score, so a tie
    scores = reranker.score(QUERY, passages)
    ranked = reranker.rank(QUERY, passages)
    assert [index for index, _ in ranked] == sorted(range(len(passages)), key=lambda i: -scores[i])
    assert [score for _, score in ranked] == sorted(scores, reverse=True)
    tied = [index for index, _ in ranked if index in (1, len(passages) - 1)]
    assert tied == [1, len(passages) - 1]
    assert reranker.rank(QUERY, passages, top_n=2) == ranked[:2]
    assert reranker.rank(QUERY, passages, top_n=0) == []
    normalized = reranker.rank(QUERY, passages, normalize=True)
    assert [index for index, _ in normalized] == [index for index, _ in ranked]
    assert all(0.0 < score < 1.0 for _, score in normalized)


# Per-call options that change the forward pass (or the inputs), by family: each runs batched too.
FORWARD_OPTIONS = {
    "llm": {"prompt": OPTION_VALUES["prompt"]},
    "layerwise": {"cutoff_layers": 2},
    "lightweight": {"cutoff_layers": 3, "compress_ratio": 2, "compress_layers": [1, 2]},
    "qwen3-reranker": {"prompt": OPTION_VALUES["prompt"]},
    "mxbai-rerank": {"prompt": "Find passages about animals."},
}
# max_length counts the chat template too in these families (qwen3-reranker's is 61 tiny tokens):
# enough for the passages to count, and the long pairs are still cut.
BATCHED_MAX_LENGTH = {"qwen3-reranker": 128}


def test_batched_scores_equal_unbatched_ones(reranker, parity_pairs, tolerance):
    for forward_options in ({}, FORWARD_OPTIONS.get(reranker.family)):
        if forward_options is None:
            continue
        # max_length 64 keeps it cheap; the long pairs are still cut (and sorted first).
        options = {"max_length": BATCHED_MAX_LENGTH.get(reranker.family, 64), **forward_options}
        alone = reranker.score_pairs(parity_pairs, batch_size=1, **options)  # one pair a batch
        # Nearly all distinct, so a swap of two pairs would show.
        assert len({round(score, 3) for score in alone}) >= len(alone) - 2
        for batch_size in (4, len(parity_pairs)):
            batched = reranker.score_pairs(parity_pairs, batch_size=batch_size, **options)
            assert batched == pytest.approx(alone, abs=tolerance), (batch_size, options)


def test_max_length_edges(reranker, caplog):
    short = reranker.score(QUERY, PASSAGES, max_length=1)
    assert len(short) == len(PASSAGES) and all(math.isfinite(score) for score in short)
    limit = reranker.max_supported_length
    assert limit is not None
    at_limit = reranker.score(QUERY, PASSAGES[:2], max_length=limit)
    assert reranker.score(QUERY, PASSAGES[:2], max_length=limit + 100) == at_limit
    assert "exceeds the model's" in caplog.text
    with pytest.raises(ConfigurationError, match="max_length must be at least 1"):
        reranker.score(QUERY, PASSAGES, max_length=0)


# -- per-request options through the API ---------------------------------------------------------


@pytest.fixture(scope="module")
def client(request, tmp_path_factory, minilm_path, minilm_embedder):
    """One app holding every reranker of the contract by its name (batching on, as served)."""
    from search_service.app import create_app
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate

    loaded = {name: request.getfixturevalue(fixture) for name, fixture in CONTRACT_RERANKERS.items()}
    folder = tmp_path_factory.mktemp("contract-app")
    url = f"sqlite:///{folder / 'rag.db'}"
    migrate(url)
    settings = Settings(
        data_dir=folder / "data",
        database_url=url,
        embedder_model=minilm_path,
        rerankers=tuple((name, "-") for name in loaded),  # already loaded
        reranker_model=None,
        device="cpu",
        auth="off",
    )
    rerankers = RerankerSet(loaded, "encoder-packed")
    services = build_services(settings, embedder=minilm_embedder, rerankers=rerankers)
    app = create_app(services=services)
    app.config["TESTING"] = True
    yield app.test_client()
    services.close()


def _rerank(client, name, **options):
    body = {"query": QUERY, "documents": PASSAGES[:3], "model": name, **options}
    return client.post("/v1/rerank", json=body)


def _error(response, code):
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    return error["message"]


def _options(reranker) -> dict:
    layers = list(getattr(reranker, "layers", None) or [2])
    return {**OPTION_VALUES, "cutoff_layers": layers[-1]}


@pytest.mark.parametrize("name", list(CONTRACT_RERANKERS))
def test_options_are_taken_or_refused_by_the_family(client, name, request):
    reranker = request.getfixturevalue(CONTRACT_RERANKERS[name])
    for option, value in _options(reranker).items():
        response = _rerank(client, name, **{option: value})
        if option in reranker.options:
            assert response.status_code == 200, (option, response.get_json())
        else:
            message = _error(response, "unsupported_option")
            assert reranker.family in message and option in message
            assert f"its options: {', '.join(reranker.options) or 'none'}" in message


@pytest.mark.parametrize("name", list(CONTRACT_RERANKERS))
def test_lengths_are_bounded_by_the_model(client, name, request):
    reranker = request.getfixturevalue(CONTRACT_RERANKERS[name])
    limit = reranker.max_supported_length
    assert _rerank(client, name, max_length=1).status_code == 200
    if limit < 8192:  # above that the request schema refuses it first
        message = _error(_rerank(client, name, max_length=limit + 1), "invalid_request")
        assert f"exceeds the model's limit of {limit}" in message
    if "query_max_length" in reranker.options:
        message = _error(_rerank(client, name, max_length=16, query_max_length=17), "invalid_request")
        assert "query_max_length: 17 exceeds max_length (16)" in message


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("layerwise", {"cutoff_layers": 9}, "layer 9 has no score head; choose from 1..4"),
        ("layerwise", {"cutoff_layers": [1, 2]}, "one layer per request"),
        ("lightweight", {"cutoff_layers": 0}, "layer 0 has no score head; choose from 1..4"),
        ("lightweight", {"cutoff_layers": [3, 4]}, "one layer per request"),
        ("lightweight", {"compress_layers": [2, 7]}, "compress_layers: [7] beyond the model's 4"),
    ],
)
def test_layer_options_name_layers_the_model_has(client, name, options, fragment):
    assert fragment in _error(_rerank(client, name, **options), "invalid_request")


def test_a_listed_layer_comes_back_as_one_int(layerwise_local, lightweight_local):
    assert layerwise_local.check_options({"cutoff_layers": [3]}) == {"cutoff_layers": 3}
    options = {"cutoff_layers": 4, "compress_ratio": 2, "compress_layers": [2, 4]}
    assert lightweight_local.check_options(options) == options
