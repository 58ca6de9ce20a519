import numpy as np
import pytest

from search_service.retrieval.index import IndexManager, VectorIndex
from search_service.store import collections as store
from search_service.store.db import Database
from tests.support.index_data import add_document, unit


def test_vector_index_exact_search_matches_numpy():
    vectors = unit(200, 16)
    ids = np.arange(1000, 1200)
    index = VectorIndex(16)
    index.add(ids, vectors)
    query = unit(1, 16, seed=1)[0]
    hits = index.search(query, 10)
    expected = np.argsort(-(vectors @ query))[:10]
    assert [h[0] for h in hits] == [int(ids[i]) for i in expected]
    assert hits[0][1] == pytest.approx(float(vectors[expected[0]] @ query), abs=1e-5)


def test_remove_and_more_k_than_rows():
    index = VectorIndex(8)
    index.add(np.array([1, 2, 3]), unit(3, 8))
    index.remove(np.array([2]))
    assert sorted(i for i, _ in index.search(unit(1, 8, 5)[0], 50)) == [1, 3]
    assert VectorIndex(8).search(unit(1, 8)[0], 5) == []


def test_save_load_roundtrip_is_atomic(tmp_path):
    index = VectorIndex(8)
    index.add(np.array([7, 9]), unit(2, 8))
    path = tmp_path / "idx" / "c.faiss"
    index.save(path, {"vector_version": 3})
    loaded, metadata = VectorIndex.load(path)
    assert metadata["vector_version"] == 3
    assert sorted(loaded.ids().tolist()) == [7, 9]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def database(migrated_url):
    database = Database(migrated_url)
    yield database
    database.dispose()


def indexed_ids(database, manager, name):
    with database.session() as session:
        return sorted(manager.get(session, store.get_collection(session, name)).ids().tolist())


def test_manager_catches_up_with_other_writers(database, tmp_path):
    """A reader process sees additions and replacements made after its index was built."""
    reader = IndexManager(tmp_path / "reader")
    add_document(database, "c", "a", unit(3, 8, 1))
    first = indexed_ids(database, reader, "c")
    assert len(first) == 3
    add_document(database, "c", "b", unit(2, 8, 2))
    add_document(database, "c", "a", unit(1, 8, 3))  # replaces a's three chunks with one
    second = indexed_ids(database, reader, "c")
    assert len(second) == 3 and not set(first) & set(second)


def test_snapshot_is_loaded_then_caught_up(database, tmp_path):
    writer = IndexManager(tmp_path / "shared")
    add_document(database, "c", "a", unit(4, 8, 1))
    with database.session() as session:
        path = writer.save_snapshot(session, store.get_collection(session, "c"))
    assert path.exists()
    add_document(database, "c", "b", unit(2, 8, 2))
    fresh = IndexManager(tmp_path / "shared")
    assert len(indexed_ids(database, fresh, "c")) == 6


def test_corrupt_snapshot_is_rebuilt_from_the_database(database, tmp_path):
    manager = IndexManager(tmp_path / "shared")
    add_document(database, "c", "a", unit(3, 8, 1))
    with database.session() as session:
        collection = store.get_collection(session, "c")
        manager.snapshot_path(collection.id).parent.mkdir(parents=True, exist_ok=True)
        manager.snapshot_path(collection.id).write_bytes(b"not a faiss index")
    assert len(indexed_ids(database, IndexManager(tmp_path / "shared"), "c")) == 3


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_every_kind_removes_filters_and_roundtrips(kind, tmp_path):
    vectors = unit(2000, 16, seed=3)
    ids = np.arange(1, 2001)
    index = VectorIndex(16, kind=kind)
    index.add(ids, vectors)
    query = vectors[10]
    assert index.search(query, 1)[0][0] == 11
    index.remove(np.array([11]))
    assert 11 not in [i for i, _ in index.search(query, 50)]
    assert len(index) == 1999 and 11 not in index.ids()
    allowed = np.array([5, 11, 700, 1999])  # a selective filter: exact answer among three live ids
    hits = index.search(query, 10, allowed_ids=allowed)
    expected = sorted([5, 700, 1999], key=lambda i: -float(vectors[i - 1] @ query))
    assert [i for i, _ in hits] == expected
    path = tmp_path / f"{kind}.faiss"
    index.save(path, {})
    loaded, metadata = VectorIndex.load(path)
    assert metadata["kind"] == kind and loaded.kind == kind
    assert 11 not in [i for i, _ in loaded.search(query, 50)] and len(loaded) == 1999


def test_manager_compacts_hnsw_tombstones(database, tmp_path):
    manager = IndexManager(tmp_path / "idx", kind="hnsw")
    add_document(database, "c", "a", unit(4, 8, 1))
    add_document(database, "c", "b", unit(4, 8, 2))
    with database.session() as session:
        index = manager.get(session, store.get_collection(session, "c"))
        assert index.kind == "hnsw" and len(index) == 8
    add_document(database, "c", "a", unit(1, 8, 3))  # 4 removed -> tombstones above 20 % -> rebuilt
    with database.session() as session:
        index = manager.get(session, store.get_collection(session, "c"))
        assert index.kind == "hnsw" and len(index) == 5 and not index.tombstones
