"""Two writers of one collection queue, they never deadlock (found by scripts/soak.py on
PostgreSQL: a worker's commit of several documents against a DELETE of one of them)."""

import threading

import numpy as np
import pytest

from search_service.store import collections as store
from search_service.store.db import Database
from search_service.store.models import Document
from tests.store.test_collection_store import chunk_rows, make_collection


def test_a_commit_of_several_documents_and_a_delete_of_one_queue(migrated_url):
    if migrated_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: no row locks to order")
    database = Database(migrated_url)
    try:
        with database.session() as session:
            collection = make_collection(session)
            for name in ("one", "two"):
                document = Document(collection_id=collection.id, external_id=name, content_hash="h0", meta={})
                session.add(document)
                session.flush()
                store.replace_chunks(session, collection, document, chunk_rows(2), np.ones((2, 4), np.float32))

        first_written, delete_started = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def commit_both():  # as the worker's final transaction: one document, then the next
            try:
                with database.session() as session:
                    collection = store.get_collection(session, "docs")
                    for name in ("one", "two"):
                        document = store.find_document(session, collection, name)
                        store.replace_chunks(session, collection, document, chunk_rows(3),
                                             np.full((3, 4), 0.5, np.float32))
                        if name == "one":
                            first_written.set()
                            delete_started.wait(10)
                            threading.Event().wait(0.5)  # let the delete reach its first lock
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def delete_two():  # as DELETE /v1/collections/docs/documents/two
            first_written.wait(10)
            delete_started.set()
            try:
                with database.session() as session:
                    store.delete_document(session, store.get_collection(session, "docs"), "two")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=commit_both), threading.Thread(target=delete_two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []  # before the collection lock: DeadlockDetected in one of them
        with database.session() as session:
            collection = store.get_collection(session, "docs")
            assert store.find_document(session, collection, "one") is not None
            assert store.find_document(session, collection, "two") is None  # the delete came last
    finally:
        database.dispose()
