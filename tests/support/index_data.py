"""Vectors and database rows for the FAISS index tests."""

from __future__ import annotations

import numpy as np

from search_service.store import collections as store
from search_service.store.models import Document


def unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """Random unit vectors (isotropic)."""
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered(rows: int, dim: int, seed: int = 0, latent: int = 24) -> np.ndarray:
    """benchmarks/index.py's `clustered` recipe, small: one Gaussian per ~100 rows in a latent
    subspace with power-law scales, a shared mean direction, a little isotropic noise, normalized."""
    rng = np.random.default_rng(seed)
    latent = min(latent, dim)
    basis = np.linalg.qr(rng.normal(size=(dim, latent)))[0].T.astype(np.float32)
    scale = np.arange(1, latent + 1, dtype=np.float32) ** -0.5
    scale /= np.linalg.norm(scale)
    centres = rng.normal(size=(max(4, rows // 100), latent)).astype(np.float32)
    z = centres[rng.integers(0, len(centres), rows)] + 2.0 * rng.normal(size=(rows, latent)).astype(np.float32)
    vectors = (z * scale) @ basis + 0.75 * unit(1, dim, seed + 2)[0]
    vectors += (0.3 / np.sqrt(dim)) * rng.normal(size=(rows, dim)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def add_document(database, name: str, external_id: str, vectors: np.ndarray) -> None:
    """Create (or replace the chunks of) a document with one chunk per vector."""
    with database.session() as session:
        collection = store.find_collection(session, name) or store.create_collection(
            session, name, embedder_model="m", dimension=vectors.shape[1], chunk_tokens=32, chunk_overlap=4
        )
        document = store.find_document(session, collection, external_id)
        if document is None:
            document = Document(collection_id=collection.id, external_id=external_id, content_hash="h", meta={})
            session.add(document)
            session.flush()
        rows = [
            {"ordinal": i, "text": f"{external_id}-{i}", "char_start": 0, "char_end": 1, "token_count": 1, "meta": {}}
            for i in range(len(vectors))
        ]
        store.replace_chunks(session, collection, document, rows, vectors)
