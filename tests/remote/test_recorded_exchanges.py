"""The TEI and vLLM adapters against exchanges copied from those engines' documentation
(tests/remote/data/recorded_exchanges.json names the source and version), replayed by a real HTTP
server that checks each request body. TEI and vLLM need a GPU or their images: not run here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from search_service.errors import EmbedderUnavailableError, RerankerRemoteRefusedError
from search_service.remote.config import EMBED_PROTOCOLS, RERANK_PROTOCOLS, RemoteConfig
from search_service.remote.protocols import MAX_LOGIT, logit
from search_service.rerankers.runtimes.remote import RemoteReranker
from tests.support.replay_server import recorded, replay_server

DATA = json.loads((Path(__file__).parent / "data" / "recorded_exchanges.json").read_text())


def reranker(url: str, protocol: str, **options) -> RemoteReranker:
    config = RemoteConfig(protocol=protocol, url=url, **{"timeout_s": 5, "retries": 0, **options})
    return RemoteReranker(config.check("test", RERANK_PROTOCOLS), name=f"{protocol}-test")


def test_tei_rerank_reads_raw_logits_in_the_callers_order():
    with replay_server(recorded(DATA["tei"]["exchanges"])) as server:
        scores = reranker(server.url, "tei").score("What is Deep Learning?", ["Deep Learning is not...", "Deep learning is..."])
    assert scores == [-1.5, 3.25]  # TEI answers best first; the scores come back in input order
    path, body = server.requests[0]
    assert path == "/rerank" and body["raw_scores"] is True and body["truncate"] is True
    assert "model" not in body  # TEI serves one model and takes no name


def test_tei_normalized_scores_are_mapped_back_to_a_clamped_logit():
    with replay_server(recorded(DATA["tei"]["exchanges"])) as server:
        remote = reranker(server.url, "tei", scores="probabilities")
        assert remote.score("What is Deep Learning?", ["Deep Learning is ..."]) == [MAX_LOGIT]
        assert remote.score("What is Deep Learning?", ["Deep Learning is ..."], normalize=True)[0] == pytest.approx(1.0)


def test_tei_refusal_is_a_clear_502_error_and_is_not_retried():
    with replay_server(recorded(DATA["tei"]["exchanges"])) as server:
        remote = reranker(server.url, "tei", retries=3)
        with pytest.raises(RerankerRemoteRefusedError) as error:
            remote.score("too many", ["a"])
    assert error.value.status == 502 and "HTTP 413" in error.value.message and "Batch size error" in error.value.message
    assert len(server.requests) == 1


def test_tei_splits_candidates_to_its_batch_limit():
    def handler(path, body):  # a TEI-shaped engine: one score per text, best first
        ranked = sorted(range(len(body["texts"])), key=lambda i: -len(body["texts"][i]))
        return 200, [{"index": i, "score": float(len(body["texts"][i]))} for i in ranked]

    texts = [f"passage {'x' * i}" for i in range(70)]
    with replay_server(handler) as server:
        scores = reranker(server.url, "tei").score("q", texts)
    assert sorted(len(body["texts"]) for _path, body in server.requests) == [6, 32, 32]  # sent side by side
    assert scores == [float(len(text)) for text in texts]


def test_vllm_score_endpoint_maps_probabilities_to_logits():
    with replay_server(recorded(DATA["vllm"]["exchanges"])) as server:
        remote = reranker(server.url, "vllm", model="BAAI/bge-reranker-v2-m3", path="/score")
        ranked = remote.rank("What is the capital of France?",
                             ["The capital of Brazil is Brasilia.", "The capital of France is Paris."])
    assert [index for index, _ in ranked] == [1, 0]
    assert ranked[0][1] == MAX_LOGIT  # a probability of exactly 1 (float16) keeps no logit
    assert ranked[1][1] == pytest.approx(math.log(0.001094818115234375 / (1 - 0.001094818115234375)))
    assert server.requests[0][0] == "/score"


def test_vllm_rerank_endpoint():
    with replay_server(recorded(DATA["vllm"]["exchanges"])) as server:
        remote = reranker(server.url, "vllm", model="BAAI/bge-reranker-base")
        scores = remote.score("What is the capital of France?",
                              ["The capital of Brazil is Brasilia.", "The capital of France is Paris."])
    assert scores == pytest.approx([logit(0.0005860328674316406), logit(0.99853515625)])
    assert scores[0] == pytest.approx(-7.442, abs=1e-3) and scores[1] == pytest.approx(6.525, abs=1e-3)
    path, body = server.requests[0]
    assert path == "/v1/rerank" and body["top_n"] == 2 and body["model"] == "BAAI/bge-reranker-base"


def test_vllm_rerank_answer_that_leaves_a_document_out_is_refused_by_name():
    """The documented exchange sends three documents and shows two results."""
    with replay_server(recorded(DATA["vllm"]["exchanges"])) as server:
        remote = reranker(server.url, "vllm", model="BAAI/bge-reranker-base")
        with pytest.raises(RerankerRemoteRefusedError, match="scores 2 of the 3 texts"):
            remote.score("What is the capital of France?", ["The capital of Brazil is Brasilia.",
                                                           "The capital of France is Paris.",
                                                           "Horses and cows are both animals"])


def test_tei_embed_is_normalized_here():
    from transformers import AutoTokenizer

    from search_service.embedding.remote import RemoteEmbedder
    from search_service.testing.minilm import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    with replay_server(recorded(DATA["tei"]["exchanges"])) as server:
        config = RemoteConfig(protocol="tei", url=server.url, timeout_s=5).check("test", EMBED_PROTOCOLS)
        embedder = RemoteEmbedder(config, "m", tokenizer, 256)
        vector = embedder.embed(["What is Deep Learning?"])
        with pytest.raises(EmbedderUnavailableError) as refused:
            embedder.embed(["not recorded"])
    np.testing.assert_allclose(vector, [[0.0, 1 / math.sqrt(5), 2 / math.sqrt(5)]], rtol=1e-6)
    assert server.requests[0] == ("/embed", {"inputs": ["What is Deep Learning?"], "normalize": True, "truncate": True})
    assert refused.value.status == 502 and refused.value.code == "embedder_remote_error"
