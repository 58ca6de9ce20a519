import numpy as np
import pytest
from sqlalchemy import func, select

from search_service.errors import (
    ConflictError,
    DimensionMismatchError,
    InvalidRequestError,
    NotFoundError,
)
from search_service.store import collections as store
from search_service.store.db import Database
from search_service.store.models import Chunk, Document


@pytest.fixture
def database(migrated_url):
    database = Database(migrated_url)
    yield database
    database.dispose()


def make_collection(session, name="docs", dimension=4):
    return store.create_collection(
        session, name, embedder_model="test/model", dimension=dimension, chunk_tokens=64, chunk_overlap=8
    )


def chunk_rows(n):
    return [
        {"ordinal": i, "text": f"chunk {i}", "char_start": i * 10, "char_end": i * 10 + 7, "token_count": 2, "meta": {}}
        for i in range(n)
    ]


def test_create_get_and_conflict(database):
    with database.session() as session:
        make_collection(session)
    with database.session() as session:
        assert store.get_collection(session, "docs").dimension == 4
        with pytest.raises(ConflictError) as info:
            make_collection(session)
        assert info.value.code == "collection_exists"
    with database.session() as session, pytest.raises(NotFoundError) as info:
        store.get_collection(session, "missing")
    assert info.value.code == "collection_not_found"


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 65, "semi;colon", "ünïcode"])
def test_invalid_names_are_refused(database, name):
    with database.session() as session, pytest.raises(InvalidRequestError):
        make_collection(session, name=name)


def test_replace_chunks_swaps_atomically_and_bumps_version(database):
    with database.session() as session:
        collection = make_collection(session)
        document = Document(collection_id=collection.id, external_id="a.txt", content_hash="h1", meta={})
        session.add(document)
        session.flush()
        store.replace_chunks(session, collection, document, chunk_rows(3), np.ones((3, 4), np.float32))
        first_version = collection.vector_version
    with database.session() as session:
        collection = store.get_collection(session, "docs")
        document = store.get_document(session, collection, "a.txt")
        store.replace_chunks(session, collection, document, chunk_rows(2), np.full((2, 4), 0.5, np.float32))
    with database.session() as session:
        collection = store.get_collection(session, "docs")
        assert collection.vector_version == first_version + 1
        chunks = session.scalars(select(Chunk).order_by(Chunk.ordinal)).all()
        assert [c.ordinal for c in chunks] == [0, 1]
        assert np.frombuffer(chunks[0].embedding, "<f4").tolist() == [0.5] * 4


def test_vectors_of_another_dimension_are_refused(database):
    with database.session() as session:
        collection = make_collection(session)
        document = Document(collection_id=collection.id, external_id="a.txt", content_hash="h1", meta={})
        session.add(document)
        session.flush()
        with pytest.raises(DimensionMismatchError, match="4-dimensional"):
            store.replace_chunks(session, collection, document, chunk_rows(1), np.ones((1, 8), np.float32))


def test_deleting_a_collection_cascades(database):
    with database.session() as session:
        collection = make_collection(session)
        document = Document(collection_id=collection.id, external_id="a.txt", content_hash="h", meta={"k": 1})
        session.add(document)
        session.flush()
        store.replace_chunks(session, collection, document, chunk_rows(2), np.ones((2, 4), np.float32))
    with database.session() as session:
        session.delete(store.get_collection(session, "docs"))
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Chunk)) == 0
        assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_list_collections_counts(database):
    with database.session() as session:
        collection = make_collection(session, "b")
        make_collection(session, "a")
        document = Document(collection_id=collection.id, external_id="x", content_hash="h", meta={})
        session.add(document)
        session.flush()
        store.replace_chunks(session, collection, document, chunk_rows(3), np.ones((3, 4), np.float32))
    with database.session() as session:
        rows = [(c.name, d, n) for c, d, n in store.list_collections(session)]
    assert rows == [("a", 0, 0), ("b", 1, 3)]
