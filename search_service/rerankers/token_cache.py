"""Token ids of recently reranked passages, so a passage that comes back is not tokenized again.

A search reranks chunks of a fixed corpus, and the same chunks keep coming back as candidates for
related questions. Tokenizing 50 passages is the largest cost of a rerank request besides the
model (about 2-3 ms of a CPU's time, `docs/benchmarks.md`); a passage's ids depend only on its
text and the tokenizer, so they are kept here: an LRU bounded by the tokens it holds
(`RAG_RERANK_TOKEN_CACHE`, 0 turns it off), keyed by a 128-bit BLAKE2b digest of the text (the
text itself is not kept), each entry an `array('i')` (4 bytes per token). Thread-safe.

Entries hold the ids cut to `cap` tokens from the tokenizer's truncation side, which equals
cutting them later to any `max_length <= cap`.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from hashlib import blake2b

DEFAULT_MAX_TOKENS = 2_000_000  # about 8 MB of ids


def text_key(text: str) -> bytes:
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TokenCache:
    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS):
        self.max_tokens = max(0, int(max_tokens))
        self._entries: OrderedDict[bytes, array] = OrderedDict()
        self._tokens = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def tokens(self) -> int:
        return self._tokens

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Sequence[bytes]) -> list[list[int] | None]:
        if not self.max_tokens:
            return [None] * len(keys)
        found: list[list[int] | None] = []
        with self._lock:
            for key in keys:
                ids = self._entries.get(key)
                if ids is None:
                    found.append(None)
                else:
                    self._entries.move_to_end(key)
                    found.append(ids.tolist())
            hits = sum(ids is not None for ids in found)
            self.hits += hits
            self.misses += len(found) - hits
        return found

    def put(self, key: bytes, ids: Sequence[int]) -> None:
        if not self.max_tokens or len(ids) > self.max_tokens:
            return
        stored = array("i", ids)
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._tokens -= len(previous)
            self._entries[key] = stored
            self._tokens += len(stored)
            while self._tokens > self.max_tokens:
                _, evicted = self._entries.popitem(last=False)
                self._tokens -= len(evicted)

    def __getstate__(self) -> dict:
        return {"max_tokens": self.max_tokens}  # a copy (tests deep-copy rerankers) starts empty

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_tokens"])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tokens = 0
