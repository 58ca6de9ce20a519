"""One contract, every vector backend: FAISS over SQLite, pgvector on a real PostgreSQL 18 + pgvector.

Writes go through the store (`replace_chunks`, `delete_document`) as ingestion does; searches
through `VectorStores`, as the search pipeline does. Each result is checked against the exact top
k computed here with numpy.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from search_service.errors import DimensionMismatchError
from search_service.retrieval.vector_store import VectorStores
from search_service.settings import Settings
from search_service.store import collections as store
from search_service.store.db import Database, migrate
from search_service.store.models import Document
from search_service.store.vectors import VectorLayout

DIM = 32
FLAT_MAX = 40  # filters allowing more chunks than this take the approximate path


@pytest.fixture(params=["faiss", pytest.param("pgvector", marks=pytest.mark.pgvector)])
def backend(request, tmp_path):
    """(backend name, database URL): FAISS on SQLite, pgvector on the pgserver PostgreSQL."""
    if request.param == "faiss":
        url = f"sqlite:///{tmp_path / 'rag.db'}"
        migrate(url)
        return "faiss", url
    return "pgvector", request.getfixturevalue("pgvector_url")


class Harness:
    """A database and a vector store, as one process (server or worker) would hold them."""

    def __init__(self, name: str, url: str, tmp_path, flat_max: int = FLAT_MAX):
        self.name, self.url, self.tmp_path = name, url, tmp_path
        self.settings = Settings(data_dir=tmp_path, database_url=url, index_flat_max=flat_max, vector_backend=name)
        self.database = Database(url, new_collections=VectorLayout.from_settings(self.settings))
        self.stores = VectorStores(self.settings)

    def restarted(self) -> Harness:
        """Another process on the same data: nothing shared in memory."""
        return Harness(self.name, self.url, self.tmp_path, self.settings.index_flat_max)

    def create(self, name: str = "c") -> None:
        with self.database.session() as session:
            store.create_collection(session, name, embedder_model="test", dimension=DIM, chunk_tokens=64, chunk_overlap=0)

    def write(self, external_id: str, vectors: np.ndarray, collection: str = "c", meta: dict | None = None) -> list[int]:
        """Add or replace a document with one chunk per vector; returns the chunk ids."""
        with self.database.session() as session:
            target = store.get_collection(session, collection)
            document = store.find_document(session, target, external_id)
            if document is None:
                document = Document(collection_id=target.id, external_id=external_id, content_hash="h", meta=meta or {})
                session.add(document)
                session.flush()
            chunks = [
                {"ordinal": i, "text": f"{external_id}-{i}", "char_start": 0, "char_end": 1, "token_count": 1, "meta": {}}
                for i in range(len(vectors))
            ]
            store.replace_chunks(session, target, document, chunks, vectors)
            session.flush()
            ids = [c.id for c in session.scalars(_chunks_of(document))]
        with self.database.session() as session:
            self.stores.after_write(session, store.get_collection(session, collection))
        return ids

    def delete(self, external_id: str, collection: str = "c") -> None:
        with self.database.session() as session:
            store.delete_document(session, store.get_collection(session, collection), external_id)

    def search(self, query: np.ndarray, k: int, allowed=None, collection: str = "c"):
        with self.database.session() as session:
            target = store.get_collection(session, collection)
            allowed = None if allowed is None else np.asarray(sorted(allowed), dtype=np.int64)
            return self.stores.search(session, target, query, k, allowed)

    def count(self, collection: str = "c") -> int:
        with self.database.session() as session:
            return self.stores.count(session, store.get_collection(session, collection))

    def close(self) -> None:
        self.database.dispose()


def _chunks_of(document):
    from sqlalchemy import select

    from search_service.store.models import Chunk

    return select(Chunk).where(Chunk.document_id == document.id).order_by(Chunk.ordinal)


def unit(rows: int, seed: int) -> np.ndarray:
    """Clustered unit vectors (20 centres), so neighbours are meaningful."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM))
    vectors = centres[rng.integers(0, 20, rows)] + 0.6 * rng.standard_normal((rows, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def exact(ids: list[int], vectors: np.ndarray, query: np.ndarray, k: int, allowed=None) -> list[int]:
    ids = np.asarray(ids)
    scores = vectors @ query
    keep = np.ones(len(ids), bool) if allowed is None else np.isin(ids, list(allowed))
    order = np.lexsort((ids[keep], -scores[keep]))[:k]
    return [int(i) for i in ids[keep][order]]


@pytest.fixture
def harness(backend, tmp_path):
    h = Harness(*backend, tmp_path)
    yield h
    h.close()


def populate(h: Harness, documents: int = 30, per_document: int = 10, seed: int = 0):
    """`documents` documents of `per_document` chunks; returns (ids, vectors, ids per document)."""
    h.create()
    vectors = unit(documents * per_document, seed)
    ids, by_document = [], {}
    for d in range(documents):
        chunk_ids = h.write(f"doc{d}", vectors[d * per_document : (d + 1) * per_document])
        by_document[f"doc{d}"] = chunk_ids
        ids.extend(chunk_ids)
    return ids, vectors, by_document


def test_the_collection_records_its_backend(harness):
    harness.create()
    with harness.database.session() as session:
        collection = store.get_collection(session, "c")
        assert collection.vector_backend == harness.name
        assert harness.stores.for_collection(collection).name == harness.name


def test_empty_collection_returns_nothing(harness):
    harness.create()
    assert harness.search(unit(1, 5)[0], 10) == []
    assert harness.search(unit(1, 5)[0], 10, allowed=[]) == []
    assert harness.count() == 0


def test_added_vectors_come_back_as_the_exact_top_k_with_inner_products(harness):
    ids, vectors, _ = populate(harness)
    assert harness.count() == len(ids)
    for query in unit(5, 9):
        hits = harness.search(query, 10)
        assert [i for i, _ in hits] == exact(ids, vectors, query, 10)
        by_id = dict(zip(ids, vectors))
        for chunk_id, score in hits:
            assert score == pytest.approx(float(by_id[chunk_id] @ query), abs=1e-4)


def test_replaced_chunks_never_come_back(harness):
    ids, _vectors, by_document = populate(harness)
    fresh = unit(3, 77)
    new_ids = harness.write("doc0", fresh)
    assert not set(new_ids) & set(by_document["doc0"])
    hits = {i for i, _ in harness.search(fresh[0], 300)}
    assert new_ids[0] in hits and not hits & set(by_document["doc0"])
    assert harness.count() == len(ids) - 10 + 3
    assert harness.search(fresh[1], 1)[0][0] == new_ids[1]


def test_deleted_documents_are_gone_at_once(harness):
    ids, vectors, by_document = populate(harness)
    reader = harness.restarted()
    target = vectors[ids.index(by_document["doc3"][0])]
    assert reader.search(target, 1)[0][0] == by_document["doc3"][0]
    harness.delete("doc3")
    found = {i for i, _ in reader.search(target, 300)}
    assert not found & set(by_document["doc3"]) and len(found) == len(ids) - 10
    reader.close()


@pytest.mark.parametrize("documents_allowed", [1, 3, 15, 30])  # 10, 30 (exact), 150, 300 chunks (approximate)
def test_filters_of_every_selectivity_return_the_top_matches_among_allowed(harness, documents_allowed):
    ids, vectors, by_document = populate(harness)
    allowed = {i for d in range(0, 30, 30 // documents_allowed) for i in by_document[f"doc{d}"]}
    recalls = []
    for query in unit(5, 11):
        hits = [i for i, _ in harness.search(query, 20, allowed=allowed)]
        truth = exact(ids, vectors, query, 20, allowed)
        assert set(hits) <= allowed and len(hits) == min(20, len(allowed))
        if len(allowed) <= FLAT_MAX:
            assert hits == truth  # narrow filters are answered exactly
        recalls.append(len(set(hits) & set(truth)) / len(truth))
    assert np.mean(recalls) >= 0.95


def test_vectors_of_another_dimension_are_refused(harness):
    populate(harness, documents=2)
    with pytest.raises(DimensionMismatchError, match="32-dimensional"):
        harness.search(np.ones(DIM + 1, np.float32), 5)
    with pytest.raises(DimensionMismatchError):
        harness.write("bad", np.ones((1, DIM + 1), np.float32))


def test_a_restarted_process_sees_the_same_vectors(harness):
    ids, vectors, _ = populate(harness)
    query = unit(1, 21)[0]
    before = harness.search(query, 10)
    restarted = harness.restarted()
    after = restarted.search(query, 10)
    assert [i for i, _ in after] == [i for i, _ in before] == exact(ids, vectors, query, 10)
    restarted.close()


def test_a_write_by_another_process_is_searchable_in_the_next_query(harness):
    _ids, vectors, _ = populate(harness, documents=5)
    reader = harness.restarted()
    reader.search(vectors[0], 5)  # the reader holds whatever it holds
    extra = unit(1, 33)
    writer = harness.restarted()
    (new_id,) = writer.write("late", extra)
    assert reader.search(extra[0], 1)[0][0] == new_id
    reader.close()
    writer.close()


def test_concurrent_writers_lose_nothing(harness):
    harness.create()
    vectors = unit(40, 44)
    written: dict[str, list[int]] = {}
    errors = []

    def writer(worker: int):
        process = harness.restarted()
        try:
            for d in range(5):
                name = f"w{worker}-{d}"
                row = worker * 10 + d * 2
                written[name] = process.write(name, vectors[row : row + 2])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            process.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert harness.count() == 40
    for name, chunk_ids in written.items():
        row = int(name[1]) * 10 + int(name.split("-")[1]) * 2
        assert harness.search(vectors[row], 1)[0][0] == chunk_ids[0]


def test_vector_settings_are_checked_and_pgvector_needs_postgresql(tmp_path):
    from search_service.errors import ConfigurationError
    from search_service.services import build_services

    with pytest.raises(ConfigurationError, match="RAG_VECTOR_BACKEND"):
        Settings(vector_backend="milvus")
    with pytest.raises(ConfigurationError, match="RAG_PGVECTOR_TYPE"):
        Settings.from_env({"RAG_PGVECTOR_TYPE": "bit"})
    assert Settings.from_env({"RAG_VECTOR_BACKEND": "PGVECTOR", "RAG_PGVECTOR_EF_SEARCH": "400"}).pgvector_ef_search == 400
    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    settings = Settings(data_dir=tmp_path, database_url=url, vector_backend="pgvector")
    with pytest.raises(ConfigurationError, match="needs PostgreSQL"):
        build_services(settings, embedder=object(), with_rerankers=False)
