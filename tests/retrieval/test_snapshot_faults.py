"""A failing fsync, rename or full disk while writing a snapshot keeps the previous one loadable."""

import errno
import os

import numpy as np
import pytest

from search_service.retrieval.index import VectorIndex


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def make_index(ids):
    index = VectorIndex(4)
    index.add(np.array(ids), np.eye(4, dtype=np.float32)[: len(ids)])
    return index


@pytest.mark.parametrize("target", ["os.fsync", "os.replace", "write"])
def test_failed_snapshot_write_keeps_the_previous_snapshot(tmp_path, monkeypatch, target):
    path = tmp_path / "c.faiss"
    make_index([1, 2]).save(path, {"vector_version": 1})
    if target == "write":
        import search_service.retrieval.ann as module

        real_fdopen = os.fdopen

        class FullFile:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(module.os, "fdopen", lambda fd, mode: FullFile(real_fdopen(fd, mode)))
    else:
        _module_name, attribute = target.split(".")
        monkeypatch.setattr(os, attribute, full_disk)
    with pytest.raises(OSError):
        make_index([1, 2, 3]).save(path, {"vector_version": 2})
    monkeypatch.undo()
    loaded, metadata = VectorIndex.load(path)
    assert sorted(loaded.ids().tolist()) == [1, 2] and metadata["vector_version"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_ingestion_survives_a_snapshot_failure(migrated_url, make_services, monkeypatch):
    """The chunks are committed first; a full disk at snapshot time only costs a catch-up later."""
    from ingestion.pipeline import SourceDocument
    from search_service.retrieval.index import IndexManager

    services = make_services(migrated_url)
    monkeypatch.setattr(IndexManager, "save_snapshot", full_disk)
    [result] = services.ingestion.ingest("docs", [SourceDocument(external_id="a", text="Volcanoes erupt lava.")])
    assert result.status == "added"
    monkeypatch.undo()
    hits = services.search.search("docs", "lava", top_k=1, candidates=5, rerank=False)["results"]
    assert hits and hits[0]["document_id"] == "a"
