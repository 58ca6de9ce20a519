"""A bounded LRU of query embeddings, keyed by (model id, query text).

Chat frontends repeat queries (retries, pagination, the same question from several users); the
embedding of a query is a pure function of the model and the text, so a hit skips the encoder.
Only queries are cached: passages are embedded once at ingestion anyway. `capacity` 0 disables it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class QueryEmbeddingCache:
    def __init__(self, capacity: int = 1024):
        self.capacity = max(0, int(capacity))
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, model_id: str, texts: list[str]) -> list[np.ndarray | None]:
        with self._lock:
            found = []
            for text in texts:
                vector = self._entries.get((model_id, text))
                if vector is not None:
                    self._entries.move_to_end((model_id, text))
                found.append(vector)
            hits = sum(vector is not None for vector in found)
            self.hits += hits
            self.misses += len(texts) - hits
            return found

    def put_many(self, model_id: str, texts: list[str], vectors: np.ndarray) -> None:
        if not self.capacity:
            return
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                row = np.array(vector, dtype=np.float32, copy=True)
                row.setflags(write=False)  # shared between requests: nobody may change it in place
                self._entries[(model_id, text)] = row
                self._entries.move_to_end((model_id, text))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def embed(self, model_id: str, texts: list[str], encode) -> np.ndarray:
        """Rows for `texts`, calling `encode(missing_texts)` once for the texts not cached."""
        if not self.capacity:
            return encode(texts)
        found = self.get_many(model_id, texts)
        missing = list(dict.fromkeys(text for text, vector in zip(texts, found) if vector is None))
        if missing:
            fresh = encode(missing)
            self.put_many(model_id, missing, fresh)
            by_text = dict(zip(missing, fresh))
            found = [by_text[text] if vector is None else vector for text, vector in zip(texts, found)]
        return np.ascontiguousarray(np.stack(found), dtype=np.float32)
