"""Cohere's rerank fields on /v1/rerank, for an encoder and an llm reranker: `max_tokens_per_doc`
(v2) cuts each document to its first tokens, `rank_fields` (v1) ranks document objects on the named
fields, objects keep their other fields in `return_documents`, `max_chunks_per_doc` is a clear 400."""

from __future__ import annotations

import pytest

from tests.api.test_rerankers_by_name import (  # noqa: F401 - fixtures
    QUERY,
    assert_error,
    by_index,
    client,
    rerankers,
)

LONG = "The giant panda is a bear species endemic to China, and it eats bamboo. " * 6
DOCS = ["Paris is the capital of France.", LONG, "pandas"]


def post(client, **body):  # noqa: F811 - the fixture's value
    return client.post("/v1/rerank", json={"query": QUERY, "raw_scores": True, **body})


def first_tokens(reranker, text: str, count: int) -> str:
    """The text up to its `count`-th token, by the HF tokenizer's own offsets."""
    encoded = reranker.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    return text if len(offsets) <= count else text[: offsets[count - 1][1]]


@pytest.mark.parametrize("model", ["enc", "llm"])
def test_max_tokens_per_doc_cuts_each_document(client, rerankers, model):  # noqa: F811
    reranker = rerankers.pick(model)
    cut = [first_tokens(reranker, text, 8) for text in DOCS]
    assert cut[1] != LONG and cut[2] == DOCS[2]  # the long one is cut, a short one is not
    response = post(client, model=model, documents=DOCS, max_tokens_per_doc=8)
    assert response.status_code == 200, response.get_json()
    expected = post(client, model=model, documents=cut)
    assert by_index(response) == pytest.approx(by_index(expected), abs=1e-5)
    assert by_index(response)[1] != pytest.approx(
        by_index(post(client, model=model, documents=DOCS))[1]
    )
    # The documents come back as sent, not cut.
    returned = post(
        client, model=model, documents=DOCS, max_tokens_per_doc=8, return_documents=True
    )
    assert {r["document"]["text"] for r in returned.get_json()["results"]} == set(DOCS)


def test_rank_fields_rank_objects_on_the_named_fields(client):  # noqa: F811
    objects = [
        {"title": "Capitals", "body": DOCS[0], "id": 7},
        {"title": "Bears", "body": LONG, "id": 8, "tags": ["animal"]},
    ]
    response = post(client, documents=objects, rank_fields=["title", "body"], return_documents=True)
    assert response.status_code == 200, response.get_json()
    as_lines = [f"title: {o['title']}\nbody: {o['body']}" for o in objects]
    assert by_index(response) == pytest.approx(by_index(post(client, documents=as_lines)), abs=1e-5)
    results = response.get_json()["results"]
    assert [r["document"] for r in sorted(results, key=lambda r: r["index"])] == objects
    one_field = post(client, documents=objects, rank_fields=["body"])
    assert by_index(one_field) == pytest.approx(
        by_index(post(client, documents=[o["body"] for o in objects])), abs=1e-5
    )
    # Without rank_fields an object is ranked on its text; other fields are allowed and kept.
    with_text = post(client, documents=[{"text": DOCS[0], "id": 1}, DOCS[2]], return_documents=True)
    assert with_text.status_code == 200
    assert by_index(with_text) == pytest.approx(
        by_index(post(client, documents=[DOCS[0], DOCS[2]])), abs=1e-5
    )
    assert {"text": DOCS[0], "id": 1} in [r["document"] for r in with_text.get_json()["results"]]


def test_unusable_cohere_fields_are_400(client):  # noqa: F811
    missing = post(
        client,
        documents=[{"title": "x", "body": "y"}, {"title": "z"}],
        rank_fields=["title", "body"],
    )
    assert_error(missing, 400, "invalid_request", "documents[1]", "'body'")
    no_text = post(client, documents=[{"title": "x"}])
    assert_error(no_text, 400, "invalid_request", "documents[0]", "rank_fields")
    not_a_string = post(client, documents=[{"text": 3}])
    assert_error(not_a_string, 400, "invalid_request", "documents.0", "valid string")
    chunks = post(client, documents=DOCS, max_chunks_per_doc=10)
    assert_error(chunks, 400, "invalid_request", "max_chunks_per_doc is not supported")
    assert_error(post(client, documents=DOCS, max_tokens_per_doc=0), 400, "invalid_request")
    assert_error(post(client, documents=DOCS, rank_fields=[]), 400, "invalid_request")
