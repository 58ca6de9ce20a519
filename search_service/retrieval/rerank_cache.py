"""A bounded, in-memory LRU cache of reranker scores.

Key: (reranker name, its options, query, SHA-256 of the passage text). A repeated or paginated
search scores only the passages it has not seen; a chunk whose text changed has another hash, so
its old score is never reused. The value is the raw score (logit) the reranker returned.
`capacity` 0 disables the cache. Safe to share between request threads.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RerankCache:
    def __init__(self, capacity: int = 10_000):
        self.capacity = max(0, int(capacity))
        self._entries: OrderedDict[tuple, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def keys(reranker: str, options: dict | None, query: str, texts: list[str]) -> list[tuple]:
        options_key = json.dumps(options or {}, sort_keys=True, default=str)
        return [(reranker, options_key, query, content_hash(text)) for text in texts]

    def get_many(self, keys: list[tuple]) -> list[float | None]:
        with self._lock:
            found = []
            for key in keys:
                value = self._entries.get(key)
                if value is not None:
                    self._entries.move_to_end(key)
                found.append(value)
            return found

    def put_many(self, items: list[tuple[tuple, float]]) -> None:
        if not self.capacity:
            return
        with self._lock:
            for key, value in items:
                self._entries[key] = float(value)
                self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def score_with_cache(cache: RerankCache | None, model, name: str, query: str, texts: list[str], options: dict | None) -> tuple[list[float], int, int]:
    """(raw scores in input order, cache hits, misses); only the misses go to `model.score`."""
    if cache is None or not cache.capacity:
        return [float(v) for v in model.score(query, texts, **(options or {}))], 0, len(texts)
    keys = cache.keys(name, options, query, texts)
    scores = cache.get_many(keys)
    missing = [i for i, value in enumerate(scores) if value is None]
    if missing:
        fresh = model.score(query, [texts[i] for i in missing], **(options or {}))
        for i, value in zip(missing, fresh):
            scores[i] = float(value)
        cache.put_many([(keys[i], scores[i]) for i in missing])
    return [float(v) for v in scores], len(texts) - len(missing), len(missing)
