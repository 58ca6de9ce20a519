"""The large-collection index (IVF under `auto`): switching, updates, snapshots, recall, filters.

`index_flat_max` is made small so that a few hundred vectors already count as a large collection.
"""

import json

import numpy as np
import pytest

from search_service.retrieval import ann
from search_service.retrieval.ann import VectorIndex, choose_kind, ivf_lists
from search_service.retrieval.index import IndexManager
from search_service.settings import ConfigurationError, Settings
from search_service.store import collections as store
from search_service.store.db import Database
from tests.support.index_data import add_document, clustered, unit

DIM = 32


@pytest.fixture
def database(migrated_url):
    database = Database(migrated_url)
    yield database
    database.dispose()


def exact_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    return [int(ids[i]) for i in np.lexsort((ids, -scores))[:k]]


def recall_at(index: VectorIndex, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int = 50) -> float:
    found = [len({i for i, _ in index.search(q, k)} & set(exact_top(vectors, ids, q, k))) / k for q in queries]
    return float(np.mean(found))


def collection_index(database, manager, name="c"):
    with database.session() as session:
        return manager.get(session, store.get_collection(session, name))


def all_vectors(database, name="c") -> tuple[np.ndarray, np.ndarray]:
    with database.session() as session:
        return IndexManager._fetch(session, store.get_collection(session, name), None)


def test_auto_picks_flat_up_to_the_limit_then_ivf():
    assert ann.LARGE_KIND == "ivf"
    assert choose_kind(200, "auto", 200) == "flat" and choose_kind(201, "auto", 200) == "ivf"
    assert choose_kind(5, "hnsw", 200) == "hnsw" and choose_kind(10**6, "flat", 200) == "flat"
    # an IVF collection shrinking just under the limit stays IVF until it is below 90 % of it
    assert choose_kind(190, "auto", 200, current="ivf") == "ivf" and choose_kind(180, "auto", 200, current="ivf") == "flat"
    assert choose_kind(190, "auto", 200, current="flat") == "flat"
    assert ivf_lists(10) == 1 and ivf_lists(100_000) == 1264 and ivf_lists(1_000_000) == 4000


def test_index_settings_are_read_and_checked(monkeypatch):
    monkeypatch.setenv("RAG_INDEX_TYPE", "IVF")
    monkeypatch.setenv("RAG_INDEX_NPROBE", "64")
    monkeypatch.setenv("RAG_INDEX_EF_SEARCH", "512")
    settings = Settings.from_env()
    assert (settings.index_type, settings.index_nprobe, settings.index_ef_search) == ("ivf", 64, 512)
    assert (Settings().index_nprobe, Settings().index_ef_search) == (ann.DEFAULT_NPROBE, ann.DEFAULT_EF_SEARCH)
    manager = IndexManager.from_settings(settings)
    assert manager.options == {"nprobe": 64, "ef_search": 512, "exact_max": settings.index_flat_max}
    with pytest.raises(ConfigurationError):
        Settings(index_type="ivfpq")
    with pytest.raises(ConfigurationError):
        Settings(index_nprobe=0)


def test_ivf_recall_at_50_on_clustered_vectors():
    """Probing 16 of 102 lists finds >= 90 % of the exact top 50; probing all of them is exact."""
    data = clustered(4040, DIM, seed=5)
    vectors, queries = data[:4000], data[4000:]  # queries drawn from the same mixture
    ids = np.arange(10, 4010, dtype=np.int64)
    index = VectorIndex(DIM, kind="ivf", nprobe=16)
    index.add(ids, vectors)
    assert index.nlist == ivf_lists(4000) == 102 and index.trained_on == 4000
    assert recall_at(index, vectors, ids, queries) >= 0.9
    index.nprobe = ann.DEFAULT_NPROBE  # the service default: more than 102, so every list
    assert recall_at(index, vectors, ids, queries[:10]) == 1.0


def test_ivf_filters_are_exact_and_deleted_ids_never_return():
    vectors = clustered(3000, DIM, seed=2)
    ids = np.arange(1, 3001, dtype=np.int64)
    index = VectorIndex(DIM, kind="ivf", nprobe=1, exact_max=1000)
    index.add(ids, vectors)
    query = vectors[0]
    # a selective filter spread over many lists: exact among the allowed, even with nprobe 1
    allowed = np.random.default_rng(3).choice(ids, 300, replace=False)
    mask = np.isin(ids, allowed)
    hits = index.search(query, 20, allowed_ids=allowed)
    assert [i for i, _ in hits] == exact_top(vectors[mask], ids[mask], query, 20)
    assert hits[0][1] == pytest.approx(float(np.max(vectors[mask] @ query)), abs=1e-5)
    # removed ids are gone from plain and filtered searches, ids() and len()
    removed = np.array([int(h[0]) for h in hits[:5]] + [1])
    index.remove(removed)
    assert len(index) == 2994 and not set(removed) & set(index.ids().tolist())
    index.nprobe = index.nlist
    assert not set(removed) & {i for i, _ in index.search(query, 200)}
    filtered = index.search(query, 50, allowed_ids=allowed)
    assert not set(removed) & {i for i, _ in filtered}
    keep = mask & ~np.isin(ids, removed)
    assert [i for i, _ in filtered] == exact_top(vectors[keep], ids[keep], query, 50)
    # a filter broader than exact_max searches approximately, probing proportionally more lists
    index.nprobe = 8  # x2 for a filter allowing half the vectors
    broad = ids[~np.isin(ids, removed)][::2]
    got = {i for i, _ in index.search(query, 50, allowed_ids=broad)}
    wanted = set(exact_top(vectors[np.isin(ids, broad)], ids[np.isin(ids, broad)], query, 50))
    assert got <= set(broad.tolist()) and len(got & wanted) / 50 >= 0.9
    # removing unknown ids is harmless; k beyond what is left returns everything once
    index.remove(np.array([999_999]))
    assert len(index.search(query, 5000)) == 2994


def test_ivf_tiny_and_empty_collections_still_answer(tmp_path):
    index = VectorIndex(4, kind="ivf")
    assert index.search(np.ones(4, dtype=np.float32), 5) == [] and len(index) == 0
    index.save(tmp_path / "empty.faiss", {})
    empty, _ = VectorIndex.load(tmp_path / "empty.faiss")
    empty.add(np.array([5, 6, 7]), np.eye(4, dtype=np.float32)[:3])  # trained on its first vectors
    assert empty.nlist == 1 and empty.search(np.eye(4, dtype=np.float32)[1], 2)[0][0] == 6
    empty.remove(np.array([6]))
    assert sorted(i for i, _ in empty.search(np.eye(4, dtype=np.float32)[1], 5)) == [5, 7]


def test_manager_switches_to_ivf_and_keeps_every_guarantee(database, tmp_path):
    """Add, replace, delete, search, snapshot, load, rebuild with IVF above a 200-vector limit."""
    manager = IndexManager(tmp_path / "idx", kind="auto", flat_max=200, nprobe=4)
    add_document(database, "c", "a", clustered(150, DIM, seed=1))
    assert collection_index(database, manager).kind == "flat"
    add_document(database, "c", "b", clustered(300, DIM, seed=2))
    index = collection_index(database, manager)
    assert index.kind == "ivf" and len(index) == 450 and index.trained_on == 450
    assert index.nlist == ivf_lists(450) and index.exact_max == 200
    ids, vectors = all_vectors(database)
    old = set(ids.tolist())
    add_document(database, "c", "a", clustered(100, DIM, seed=3))  # replaces a's 150 chunks with 100
    with database.session() as session:
        store.delete_document(session, store.get_collection(session, "c"), "b")
    add_document(database, "c", "d", clustered(120, DIM, seed=4))
    index = collection_index(database, manager)
    ids, vectors = all_vectors(database)
    gone = old - set(ids.tolist())
    assert index.kind == "ivf" and len(index) == 220 and sorted(index.ids().tolist()) == sorted(ids.tolist())
    assert len(gone) == 450 and not index.tombstones
    queries = np.vstack([vectors[:10], unit(10, DIM, seed=9)])
    for query in queries:
        hits = {i for i, _ in index.search(query, 50)}
        assert not hits & gone
    with database.session() as session:
        path = manager.save_snapshot(session, store.get_collection(session, "c"))
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["kind"] == "ivf" and metadata["trained_on"] == 450 and metadata["nlist"] == ivf_lists(450)
    # a fresh process loads the snapshot with its own search options, then catches up
    add_document(database, "c", "e", clustered(30, DIM, seed=6))
    reader = IndexManager(tmp_path / "idx", kind="auto", flat_max=200, nprobe=7)
    loaded = collection_index(database, reader)
    ids, vectors = all_vectors(database)
    assert loaded.kind == "ivf" and loaded.nprobe == 7 and index.nprobe == 4
    assert sorted(loaded.ids().tolist()) == sorted(ids.tolist()) and loaded.trained_on == 450
    # filtered search through the manager: exact among the allowed chunks
    allowed = ids[::7]
    with database.session() as session:
        hits = reader.search(session, store.get_collection(session, "c"), vectors[3], 10, allowed)
    mask = np.isin(ids, allowed)
    assert [i for i, _ in hits] == exact_top(vectors[mask], ids[mask], vectors[3], 10)
    # reindex: retrained on the collection as it is now
    with database.session() as session:
        reader.rebuild(session, store.get_collection(session, "c"))
    rebuilt = collection_index(database, reader)
    assert rebuilt.kind == "ivf" and rebuilt.trained_on == 250 and len(rebuilt) == 250
    # shrinking back under the limit returns to exact Flat
    with database.session() as session:
        store.delete_document(session, store.get_collection(session, "c"), "d")
    assert collection_index(database, reader).kind == "flat"


def test_ivf_is_retrained_when_the_collection_grows_four_times(database, tmp_path):
    manager = IndexManager(tmp_path / "idx", kind="ivf")
    add_document(database, "c", "a", clustered(100, DIM, seed=1))
    index = collection_index(database, manager)
    assert index.trained_on == 100 and index.nlist == ivf_lists(100)
    add_document(database, "c", "b", clustered(250, DIM, seed=2))  # 350 < 4 x 100: lists kept
    index = collection_index(database, manager)
    assert index.trained_on == 100 and len(index) == 350
    add_document(database, "c", "c", clustered(100, DIM, seed=3))  # 450 > 4 x 100: retrained
    index = collection_index(database, manager)
    assert index.trained_on == 450 and index.nlist == ivf_lists(450) and len(index) == 450


def test_search_pipeline_on_ivf_filters_and_deletes(migrated_url, make_services):
    """Through the real ingestion and search paths: IVF above a 5-chunk limit, filters exact."""
    from ingestion.pipeline import SourceDocument

    services = make_services(migrated_url, index_flat_max=5)
    topics = ["volcanoes erupt lava", "glaciers carve valleys", "rivers carry silt", "deserts have dunes",
              "forests store carbon", "coral reefs bleach", "tides follow the moon", "caves grow stalactites"]
    services.ingestion.ingest("geo", [SourceDocument(external_id=f"d{i}", text=t) for i, t in enumerate(topics)])
    with services.database.session() as session:
        assert services.indexes.get(session, store.get_collection(session, "geo")).kind == "ivf"
    everything = services.search.search("geo", "lava from a volcano", top_k=8, candidates=8, rerank=False)["results"]
    assert everything[0]["document_id"] == "d0" and len(everything) == 8
    wanted = {"d1", "d4", "d6"}
    filtered = services.search.search(
        "geo", "lava from a volcano", top_k=3, candidates=3, rerank=False,
        document_filter=lambda external_id, source, metadata: external_id in wanted,
    )["results"]
    assert [r["document_id"] for r in filtered] == [r["document_id"] for r in everything if r["document_id"] in wanted]
    with services.database.session() as session:
        store.delete_document(session, store.get_collection(session, "geo"), "d0")
    after = services.search.search("geo", "lava from a volcano", top_k=8, candidates=8, rerank=False)["results"]
    assert "d0" not in {r["document_id"] for r in after} and len(after) == 7
