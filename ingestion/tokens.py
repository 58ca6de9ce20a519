"""Token character offsets of a text, from a private copy of a fast tokenizer's Rust backend.

The backend is copied once per tokenizer object, with truncation and padding off, and never
mutated afterwards: no truncation, no long-sequence warning, and no "Already borrowed" when the
embedder changes its own tokenizer's settings on another thread. Long texts are encoded as one
batch of pieces cut just before whitespace; tokens longer than `MAX_TOKEN_CHARS` are split.
"""

from __future__ import annotations

import copy
import weakref

import numpy as np

_PIECE_CHARS = 16_384  # encode long texts as a batch of pieces of about this many characters
# Longer tokens (BERT maps a whole unknown word of up to 100 characters, or a piece of a
# whitespace-free run, to one [UNK]) are walked as several tokens of this many characters, so
# such text is still cut into chunks of bounded length.
MAX_TOKEN_CHARS = 32

_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def private_backend(tokenizer):
    """The Rust tokenizer, copied once per tokenizer object, with truncation and padding off."""
    backend = _BACKENDS.get(tokenizer)
    if backend is None:
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not hasattr(backend, "encode_batch"):
            raise TypeError(f"a fast (Rust) tokenizer is required, got {type(tokenizer).__name__}")
        backend = copy.deepcopy(backend)
        backend.no_truncation()
        backend.no_padding()
        _BACKENDS[tokenizer] = backend
    return backend


def token_offsets(backend, text: str) -> tuple[list[int], list[int]]:
    """(starts, ends): the character span of each token of `text`, in order."""
    cuts = pieces(text)
    encodings = backend.encode_batch([text[s:e] for s, e in cuts], add_special_tokens=False)
    spans = [
        np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2) + offset
        for (offset, _), encoding in zip(cuts, encodings)
    ]
    spans = np.concatenate(spans) if spans else np.zeros((0, 2), dtype=np.int64)
    too_long = np.flatnonzero(spans[:, 1] - spans[:, 0] > MAX_TOKEN_CHARS)
    if too_long.size:
        spans = split_long_tokens(spans, too_long)
    return spans[:, 0].tolist(), spans[:, 1].tolist()


def split_long_tokens(spans: np.ndarray, too_long: np.ndarray) -> np.ndarray:
    parts, previous = [], 0
    for i in too_long:
        start, end = spans[i]
        cuts = np.arange(start, end, MAX_TOKEN_CHARS)
        parts += [spans[previous:i], np.stack([cuts, np.minimum(cuts + MAX_TOKEN_CHARS, end)], 1)]
        previous = i + 1
    parts.append(spans[previous:])
    return np.concatenate(parts)


def pieces(text: str) -> list[tuple[int, int]]:
    """Cut text into (start, end) pieces of about _PIECE_CHARS characters, just before a whitespace run."""
    out, pos, n = [], 0, len(text)
    while pos < n:
        end = pos + _PIECE_CHARS
        if end < n:
            half = pos + _PIECE_CHARS // 2
            cut = text.rfind("\n", half, end)
            if cut < 0:
                cut = text.rfind(" ", half, end)
            if cut < 0:
                cut = text.rfind("。", half, end) + 1
            end = cut if cut > pos else end
            while end > pos + 1 and text[end - 1].isspace():  # whitespace starts the next piece
                end -= 1
        out.append((pos, min(end, n)))
        pos = min(end, n)
    return out
