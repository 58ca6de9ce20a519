"""/v1/search's `rerank_fusion`: reranker and first-stage scores z-scored per query and mixed,
with the real MiniLM embedder and the tiny (random-weight) reranker, on SQLite and PostgreSQL.

One app per database for the module; every test only reads.
"""

from __future__ import annotations

import numpy as np
import pytest

from ingestion.pipeline import SourceDocument
from search_service.retrieval.fusion import rerank_fusion_scores
from tests.support.documents import DOCUMENTS

QUERY = "how do bears, volcanoes and coffee work"
CORPUS = {
    **DOCUMENTS,
    "backups.txt": " ".join(f"Backup rule {i}: snapshots of volume {i} are copied to the vault every {i + 1} hours."
                            for i in range(8)),
    "bears.txt": "Brown bears eat berries, fish and roots; polar bears hunt seals on the sea ice.",
}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request, tmp_path_factory, minilm_path, minilm_embedder, tiny_reranker):
    from search_service.app import create_app
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate
    from tests.conftest import _postgres_database

    data = tmp_path_factory.mktemp("fusion")
    urls = iter([f"sqlite:///{data / 'rag.db'}"]) if request.param == "sqlite" else _postgres_database()
    url = next(urls)
    migrate(url)
    built = []

    def app_with(rerankers, **overrides):
        settings = Settings(auth="off", data_dir=data, database_url=url, embedder_model=minilm_path,
                            reranker_model="tiny" if rerankers else None, device="cpu", **overrides)
        services = build_services(settings, embedder=minilm_embedder,
                                  rerankers=RerankerSet(rerankers, "tiny" if rerankers else None))
        built.append(services)
        app = create_app(services=services)
        app.config["TESTING"] = True
        return app

    app = app_with({"tiny": tiny_reranker})
    client = app.test_client()
    assert client.post("/v1/collections", json={"name": "docs", "chunk_tokens": 32, "chunk_overlap": 8}).status_code == 201
    sources = [SourceDocument(external_id=k, data=v.encode(), filename=k) for k, v in CORPUS.items()]
    assert all(r.status == "added" for r in app.extensions["search_service"].ingestion.ingest("docs", sources))
    yield app, app_with
    for services in built:
        services.close()
    next(urls, None)  # drops the PostgreSQL database


def search(client, status=200, **body):
    response = client.post("/v1/search", json={"collection": "docs", "query": QUERY, "top_k": 12,
                                               "candidates": 12, **body})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def ids(body):
    return [r["chunk_id"] for r in body["results"]]


def without_timings(body):
    return {k: v for k, v in body.items() if k not in ("timings_ms", "cache")}


def test_weight_zero_is_exactly_the_reranker_alone(env):
    app, _ = env
    client = app.test_client()
    plain = search(client, rerank=True)
    zero = search(client, rerank=True, rerank_fusion={"dense_weight": 0})
    assert plain["reranked"] is True and plain["rerank_fusion"] is None
    assert without_timings(zero) == without_timings(plain)
    assert all(r["rerank_fusion_score"] is None for r in plain["results"])
    assert all(r["score"] == pytest.approx(1 / (1 + np.exp(-r["rerank_score"]))) for r in plain["results"])


@pytest.mark.parametrize("mode,field", [("dense", "dense_score"), ("hybrid", "fusion_score"), ("sparse", "sparse_score")])
def test_fused_scores_are_the_z_score_mix_and_order_the_results(env, mode, field):
    app, _ = env
    client = app.test_client()
    alone = search(client, rerank=True, mode=mode)
    fused = search(client, rerank=True, mode=mode, rerank_fusion={"dense_weight": 0.6})
    assert fused["rerank_fusion"] == {"dense_weight": 0.6, "rerank_weight": 0.4, "first_stage_score": field,
                                      "normalization": "zscore"}
    results = fused["results"]
    assert sorted(ids(fused)) == sorted(ids(alone))  # the same candidates, in another order
    assert ids(fused) != ids(alone)
    expected = rerank_fusion_scores([r["rerank_score"] for r in results], [r[field] for r in results], 0.6)
    for result, value in zip(results, expected, strict=True):
        assert result["score"] == result["rerank_fusion_score"] == pytest.approx(value)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1))


def test_weight_one_keeps_the_first_stage_order(env):
    app, _ = env
    client = app.test_client()
    dense = search(client, rerank=False, mode="dense")
    alone = search(client, rerank=True, mode="dense")
    only_dense = search(client, rerank=True, mode="dense", rerank_fusion={"dense_weight": 1.0})
    assert ids(only_dense) == ids(dense) != ids(alone)


def test_the_setting_is_the_default_and_a_request_overrides_it(env):
    app, app_with = env
    tiny = app.extensions["search_service"].rerankers.rerankers["tiny"]
    defaulted = app_with({"tiny": tiny}, rerank_fusion_dense_weight=0.6).test_client()
    client = app.test_client()
    by_setting = search(defaulted, rerank=True)
    assert by_setting["rerank_fusion"]["dense_weight"] == 0.6
    assert ids(by_setting) == ids(search(client, rerank=True, rerank_fusion={"dense_weight": 0.6}))
    assert ids(search(defaulted, rerank=True, rerank_fusion={"dense_weight": 0})) == ids(search(client, rerank=True))
    # no reranking: nothing to fuse, and the setting does not get in the way
    assert search(defaulted, rerank=False)["rerank_fusion"] is None


def test_bad_weights_and_searches_without_reranking_are_400s(env):
    app, app_with = env
    client = app.test_client()
    for bad in (-0.1, 1.5, "0.5", True, None, 1e400):
        body = search(client, 400, rerank=True, rerank_fusion={"dense_weight": bad})
        assert "dense_weight" in body["error"]["message"]
    search(client, 400, rerank=True, rerank_fusion={})
    search(client, 400, rerank=True, rerank_fusion={"dense_weight": 0.5, "sparse_weight": 0.5})
    search(client, 400, rerank=True, rerank_fusion=0.5)
    raw = client.post("/v1/search", data=b'{"collection": "docs", "query": "x", "rerank_fusion": {"dense_weight": NaN}}',
                      content_type="application/json")
    assert raw.status_code == 400 and "rerank_fusion.dense_weight" in raw.get_json()["error"]["message"]
    body = search(client, 400, rerank=False, rerank_fusion={"dense_weight": 0.5})
    assert "rerank_fusion needs reranking" in body["error"]["message"]
    bare = app_with({}).test_client()
    body = search(bare, 400, rerank_fusion={"dense_weight": 0.5})
    assert body["error"]["code"] == "reranker_not_configured"


def test_openapi_documents_the_option_and_the_explanation(env):
    app, _ = env
    spec = app.test_client().get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    weight = schemas["RerankFusionOptions"]["properties"]["dense_weight"]
    assert weight["minimum"] == 0 and weight["maximum"] == 1
    assert schemas["RerankFusionOptions"]["required"] == ["dense_weight"]
    assert "rerank_fusion" in schemas["SearchRequest"]["properties"]
    assert "rerank_fusion" in schemas["SearchResponse"]["properties"]
    assert "rerank_fusion_score" in schemas["SearchResult"]["properties"]
