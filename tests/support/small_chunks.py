"""A collection with chunks smaller than the API allows (32 tokens), made directly in the store:
tests of page and heading metadata use a few words per page, so each page is its own chunk."""

from __future__ import annotations

from search_service.store import collections as store


def create_small_chunk_collection(services, name: str, chunk_tokens: int, chunk_overlap: int = 0) -> None:
    with services.database.session() as session:
        store.create_collection(session, name, embedder_model=services.embedder.model_id,
                                dimension=services.embedder.dimension, chunk_tokens=chunk_tokens,
                                chunk_overlap=chunk_overlap)
