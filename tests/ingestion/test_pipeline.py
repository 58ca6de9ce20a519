import numpy as np
import pytest
from sqlalchemy import func, select

from ingestion.pipeline import SourceDocument
from search_service.errors import DimensionMismatchError
from search_service.store import collections as store
from search_service.store.models import Chunk
from tests.support.documents import DOCUMENTS, PARAPHRASES


def sources(docs=DOCUMENTS):
    return [SourceDocument(external_id=name, data=text.encode(), filename=name) for name, text in docs.items()]


def chunk_count(services, name="docs"):
    with services.database.session() as session:
        collection = store.get_collection(session, name)
        return session.scalar(select(func.count()).where(Chunk.collection_id == collection.id))


def test_ingest_then_dense_search_finds_each_paraphrase(migrated_url, make_services):
    services = make_services(migrated_url)
    results = services.ingestion.ingest("docs", sources())
    assert {r.status for r in results} == {"added"}
    for external_id, query in PARAPHRASES.items():
        response = services.search.search("docs", query, top_k=3, candidates=50, rerank=False)
        assert response["results"][0]["document_id"] == external_id, query
        assert response["reranked"] is False


def test_chunks_keep_offsets_vectors_and_token_counts(migrated_url, make_services, minilm_embedder):
    services = make_services(migrated_url)
    services.ingestion.ingest("docs", sources({"panda.md": DOCUMENTS["panda.md"]}))
    with services.database.session() as session:
        collection = store.get_collection(session, "docs")
        document = store.get_document(session, collection, "panda.md")
        chunks = document.chunks
        assert collection.dimension == minilm_embedder.dimension == 384
        assert collection.chunk_tokens == 254  # MiniLM's 256 positions minus [CLS] and [SEP]
        for chunk in chunks:
            assert DOCUMENTS["panda.md"][chunk.char_start : chunk.char_end] == chunk.text
            vector = np.frombuffer(chunk.embedding, "<f4")
            expected = minilm_embedder.embed([chunk.text], kind="passage")[0]
            assert np.allclose(vector, expected, atol=1e-5)
            assert 0 < chunk.token_count <= collection.chunk_tokens


def test_reingesting_unchanged_content_is_a_noop(migrated_url, make_services):
    services = make_services(migrated_url)
    services.ingestion.ingest("docs", sources())
    with services.database.session() as session:
        before = store.get_collection(session, "docs").vector_version
        ids_before = sorted(session.scalars(select(Chunk.id)).all())
    results = services.ingestion.ingest("docs", sources())
    assert {r.status for r in results} == {"unchanged"}
    with services.database.session() as session:
        assert store.get_collection(session, "docs").vector_version == before
        assert sorted(session.scalars(select(Chunk.id)).all()) == ids_before


def test_changed_content_replaces_the_documents_chunks(migrated_url, make_services):
    services = make_services(migrated_url)
    services.ingestion.ingest("docs", sources())
    changed = {"panda.md": "Red pandas are small mammals that live in the eastern Himalayas.\n"}
    [result] = services.ingestion.ingest("docs", sources(changed))
    assert result.status == "updated"
    response = services.search.search("docs", "small mammal of the Himalayas", top_k=5, candidates=50, rerank=False)
    texts = [r["text"] for r in response["results"] if r["document_id"] == "panda.md"]
    assert texts and all("Red pandas" in t for t in texts)
    assert not any("bamboo" in r["text"].lower() for r in response["results"])


def test_a_broken_file_fails_alone(migrated_url, make_services):
    services = make_services(migrated_url)
    docs = sources({"good.txt": DOCUMENTS["coffee.txt"]}) + [
        SourceDocument(external_id="empty.txt", data=b"   \n", filename="empty.txt"),
        SourceDocument(external_id="scan.pdf", data=b"%PDF-1.7 binary", filename="scan.pdf"),
    ]
    results = {r.external_id: r for r in services.ingestion.ingest("docs", docs)}
    assert results["good.txt"].status == "added"
    assert results["empty.txt"].status == "failed" and results["empty.txt"].error_code == "empty_document"
    assert results["scan.pdf"].status == "failed" and results["scan.pdf"].error_code == "invalid_pdf"
    assert chunk_count(services) >= 1


def test_a_collection_refuses_an_embedder_of_another_dimension(migrated_url, make_services):
    services = make_services(migrated_url)
    with services.database.session() as session:
        store.create_collection(session, "other", embedder_model="BAAI/bge-m3", dimension=1024, chunk_tokens=512, chunk_overlap=64)
    with pytest.raises(DimensionMismatchError, match="1024 dimensions"):
        services.ingestion.ingest("other", sources())
