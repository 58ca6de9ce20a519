"""bge-m3 lexical weights: stored at ingestion, scored at query time, equal to FlagEmbedding's."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from ingestion.pipeline import SourceDocument
from search_service.retrieval.sparse_head import SparseHead, lexical_score
from search_service.testing.tiny_encoder import CORPUS_EN, CORPUS_ZH

TEXTS = CORPUS_EN[:6] + CORPUS_ZH[:4]


@pytest.fixture(scope="module")
def tiny_m3_dir(tmp_path_factory):
    from search_service.testing.tiny_m3 import make_tiny_m3

    return make_tiny_m3(tmp_path_factory.mktemp("tiny-m3"))


@pytest.fixture(scope="module")
def tiny_m3(tiny_m3_dir):
    from search_service.embedding import load_embedder

    return load_embedder(str(tiny_m3_dir), device="cpu", batch_size=4)


def test_lexical_weights_are_stored_and_searched(tmp_path, tiny_m3):
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate
    from search_service.store.models import Chunk

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    settings = Settings(data_dir=tmp_path, database_url=url, embedder_model=tiny_m3.model_id, reranker_model=None, device="cpu")
    services = build_services(settings, embedder=tiny_m3)
    try:
        head = services.search.sparse.head
        assert isinstance(head, SparseHead)
        services.ingestion.ingest("m3", [SourceDocument(external_id=f"d{i}", text=t) for i, t in enumerate(TEXTS)])
        with services.database.session() as session:
            stored = dict(session.execute(select(Chunk.text, Chunk.sparse)).all())
        assert stored == dict(zip(TEXTS, head.encode(TEXTS)))
        query = "what is panda?"
        body = services.search.search("m3", query, top_k=5, candidates=20, mode="sparse")
        assert body["sparse_method"] == "lexical"
        [weights] = head.encode([query])
        expected = sorted((lexical_score(weights, stored[t]) for t in TEXTS), reverse=True)
        assert [r["sparse_score"] for r in body["results"]] == pytest.approx([s for s in expected if s > 0][:5], abs=1e-9)
        bm25 = services.search.search("m3", "panda", top_k=3, candidates=20, mode="sparse", sparse_method="bm25")
        assert bm25["sparse_method"] == "bm25" and "panda" in bm25["results"][0]["text"].lower()
    finally:
        services.close()


def test_no_head_without_sparse_linear(tmp_path):
    from search_service.retrieval.sparse_head import find_sparse_head

    assert find_sparse_head(str(tmp_path)) is None


@pytest.mark.slow
def test_lexical_weights_match_flagembedding_bgem3(tiny_m3_dir, tiny_m3):
    from tests.reference.env import run_reference_script

    reference = run_reference_script(
        "score_m3_sparse.py", {"checkpoint": str(tiny_m3_dir), "texts": TEXTS, "pairs": [[0, 1], [0, 3], [6, 7]]}
    )
    ours = SparseHead.for_embedder(tiny_m3).encode(TEXTS)
    for mine, theirs in zip(ours, reference["lexical_weights"]):
        assert mine and set(mine) == set(theirs)
        assert [mine[k] for k in theirs] == pytest.approx([theirs[k] for k in theirs], abs=1e-4)
    pairs = [lexical_score(ours[i], ours[j]) for i, j in [[0, 1], [0, 3], [6, 7]]]
    assert pairs == pytest.approx(reference["scores"], abs=1e-4)
    np.testing.assert_allclose(tiny_m3.embed(TEXTS), np.array(reference["dense"]), atol=1e-4)  # CLS + normalize
