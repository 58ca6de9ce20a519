"""Token-aware chunking that keeps exact character offsets into the source text.

`Chunker.chunk(text)` tokenizes the text once (pieces cut at whitespace, encoded as one batch)
and walks the token offsets. A chunk holds at most `chunk_tokens` tokens and ends at the best
boundary in the second half of its window: a blank line, then a sentence end, a line break,
whitespace (or a CJK character boundary), and last any token boundary. The next chunk starts at
the best boundary between `overlap_tokens` and half of that before the previous end. Always
`text[start:end] == chunk.text`, without edge whitespace, and `token_count` (the chunk
re-tokenized alone, without special tokens) is at most `chunk_tokens`.

Tokenizing uses a private copy of the tokenizer's Rust backend, made once per tokenizer object,
with truncation and padding off and never mutated afterwards: no truncation, no long-sequence
warning, and no "Already borrowed" when the embedder changes its own tokenizer's settings on
another thread. Chunkers are cheap to build and safe to use from several threads.
"""

from __future__ import annotations

import bisect
import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ingestion.parsers import Section

MIN_CHUNK_TOKENS = 8
DEFAULT_MAX_CHUNK_TOKENS = 512
_PIECE_CHARS = 16_384  # encode long texts as a batch of pieces of about this many characters
_VERIFY_BATCH = 64  # chunks planned ahead, then re-tokenized as one batch
_EDGE_SCAN = 64  # how far to look for the whitespace around a boundary
# Longer tokens (BERT maps a whole unknown word of up to 100 characters, or a piece of a
# whitespace-free run, to one [UNK]) are walked as several tokens of this many characters, so
# such text is still cut into chunks of bounded length.
_MAX_TOKEN_CHARS = 32

# Boundary levels, best first.
PARAGRAPH, SENTENCE, LINE, SPACE, TOKEN = 4, 3, 2, 1, 0
_SENTENCE_END = frozenset(".!?。！？")
_CJK_SENTENCE_END = frozenset("。！？")
_CLOSERS = frozenset("\"')]}»”’」』）")


def _is_cjk(char: str) -> bool:
    """Han, kana, hangul and full-width forms: scripts written without spaces between words."""
    return (
        "\u2e80" <= char <= "\u9fff"
        or "\uac00" <= char <= "\ud7af"
        or "\uf900" <= char <= "\ufaff"
        or "\uff00" <= char <= "\uffef"
        or "\U00020000" <= char <= "\U0003134f"
    )


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int
    end: int
    token_count: int
    ordinal: int
    heading_path: tuple[str, ...] = ()


def default_chunk_size(
    max_seq_length: int, num_special_tokens: int, *, max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS
) -> tuple[int, int]:
    """(chunk_tokens, overlap_tokens) for an embedder, so that it never truncates a chunk.

    chunk_tokens = min(max_seq_length - num_special_tokens, max_chunk_tokens) and the overlap is
    12% of it: all-MiniLM-L6-v2 (256, 2 specials) gives (254, 30); bge-m3 (8192, 2) gives
    (512, 61). The 512 cap is for retrieval quality: long chunks blur a passage's embedding and
    reranker inputs (query + passage) are often limited to 512 tokens; pass a lower
    `max_chunk_tokens` to keep room for the query in such a reranker.
    """
    chunk_tokens = min(max_seq_length - num_special_tokens, max_chunk_tokens)
    if chunk_tokens < MIN_CHUNK_TOKENS:
        raise ValueError(
            f"max_seq_length {max_seq_length} minus {num_special_tokens} special tokens leaves "
            f"{chunk_tokens} tokens per chunk; at least {MIN_CHUNK_TOKENS} are needed"
        )
    return chunk_tokens, round(chunk_tokens * 0.12)


class Chunker:
    def __init__(self, tokenizer, chunk_tokens: int, overlap_tokens: int):
        """`tokenizer`: a Hugging Face fast tokenizer (or a `tokenizers.Tokenizer`)."""
        if chunk_tokens < MIN_CHUNK_TOKENS:
            raise ValueError(f"chunk_tokens must be at least {MIN_CHUNK_TOKENS}, got {chunk_tokens}")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError(
                f"overlap_tokens must be >= 0 and smaller than chunk_tokens ({chunk_tokens}), "
                f"got {overlap_tokens}"
            )
        self._tokenizer = _private_backend(tokenizer)
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` alone, without special tokens."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def chunk(self, text: str, sections: Sequence[Section] = ()) -> list[Chunk]:
        """Split `text` into chunks; `sections` (from the parser) give each chunk its heading path."""
        walk = _Walk(text, *self._offsets(text))
        headings = _HeadingLookup(sections)
        chunks: list[Chunk] = []
        for start, end, count in self._spans(walk):
            chunks.append(Chunk(text[start:end], start, end, count, len(chunks), headings.at(start)))
        return chunks

    def _offsets(self, text: str) -> tuple[list[int], list[int]]:
        pieces = _pieces(text)
        encodings = self._tokenizer.encode_batch(
            [text[s:e] for s, e in pieces], add_special_tokens=False
        )
        spans = [
            np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2) + offset
            for (offset, _), encoding in zip(pieces, encodings)
        ]
        spans = np.concatenate(spans) if spans else np.zeros((0, 2), dtype=np.int64)
        too_long = np.flatnonzero(spans[:, 1] - spans[:, 0] > _MAX_TOKEN_CHARS)
        if too_long.size:
            spans = _split_long_tokens(spans, too_long)
        return spans[:, 0].tolist(), spans[:, 1].tolist()

    def _spans(self, walk: _Walk):
        """Yield (start, end, token_count) of each chunk in order.

        Chunks are planned on the token offsets a batch at a time and then re-tokenized together;
        the rare chunk that grows past the limit alone is shrunk and planning resumes after it.
        """
        n, text = walk.n, walk.text
        if n == 0:
            start, end = walk.strip(0, len(text))
            if start < end:
                yield start, end, self.count_tokens(text[start:end])
            return
        a, previous_cut = 0, 0
        while True:
            plan = []
            while len(plan) < _VERIFY_BATCH and (not plan or plan[-1][1] < n):
                cut = self._cut(walk, a, previous_cut)
                plan.append((a, cut, *walk.strip(walk.position(a), walk.position(cut))))
                a, previous_cut = self._next_start(walk, a, cut), cut
            counts = self._count_batch([text[start:end] for _, _, start, end in plan])
            for (first, cut, start, end), count in zip(plan, counts):
                shrunk = count > self.chunk_tokens
                if shrunk:
                    cut, start, end, count = self._shrink(walk, first, cut)
                if start < end:
                    yield start, end, count
                if cut >= n:
                    return
                if shrunk:  # the rest of the plan started from the old cut: plan again from here
                    a, previous_cut = self._next_start(walk, first, cut), cut
                    break

    def _cut(self, walk: _Walk, a: int, previous_cut: int) -> int:
        """Where the chunk starting at token a ends: the best boundary in its window's second half."""
        size, n = self.chunk_tokens, walk.n
        b = a + size
        if b >= n:
            return n
        low = max(a + max(1, size // 2), previous_cut + 1)
        cut, level = walk.best(low, b)
        if level <= TOKEN and a + 1 < low:  # nothing better than a word split: look lower
            earlier, earlier_level = walk.best(max(a + 1, previous_cut + 1), low - 1)
            if earlier_level > level:
                cut = earlier
        return walk.next_valid(b) if cut is None else cut  # None: offsets overlap all the way

    def _shrink(self, walk: _Walk, a: int, cut: int) -> tuple[int, int, int, int]:
        """Move the end back one token boundary at a time until the span fits once re-tokenized."""
        while True:
            start, end = walk.strip(walk.position(a), walk.position(cut))
            count = self.count_tokens(walk.text[start:end]) if start < end else 0
            shorter = walk.previous_valid(cut, after=a)
            if count <= self.chunk_tokens or shorter is None:
                return cut, start, end, count
            cut = shorter

    def _count_batch(self, texts: list[str]) -> list[int]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(encoding.ids) if text else 0 for text, encoding in zip(texts, encodings)]

    def _next_start(self, walk: _Walk, a: int, cut: int) -> int:
        overlap = self.overlap_tokens
        low = max(a + 1, cut - overlap)
        high = min(cut - 1, max(low, cut - overlap // 2))
        if overlap == 0 or low > high:
            return cut
        start, _ = walk.best(low, high, latest=False)
        return cut if start is None else start


_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _private_backend(tokenizer):
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


class _Walk:
    """Token offsets of a text and the boundary level at each token index (computed lazily)."""

    def __init__(self, text: str, starts: list[int], ends: list[int]):
        self.text, self.starts, self.ends, self.n = text, starts, ends, len(starts)
        self._levels = [-1] * (self.n + 1)

    def position(self, i: int) -> int:
        """Character offset of the boundary before token i."""
        return 0 if i == 0 else len(self.text) if i >= self.n else self.starts[i]

    def valid(self, i: int) -> bool:
        return i <= 0 or i >= self.n or self.starts[i] >= self.ends[i - 1]

    def next_valid(self, i: int) -> int:
        while not self.valid(i):
            i += 1
        return i

    def previous_valid(self, i: int, *, after: int) -> int | None:
        i -= 1
        while i > after and not self.valid(i):
            i -= 1
        return i if i > after else None

    def best(self, low: int, high: int, *, latest: bool = True) -> tuple[int | None, int]:
        """The valid boundary in [low, high] with the best level; ties go to the latest (or earliest)."""
        order = range(high, low - 1, -1) if latest else range(low, high + 1)
        starts, ends, levels, n = self.starts, self.ends, self._levels, self.n
        best, best_level = None, -1
        for i in order:
            if 0 < i < n and starts[i] < ends[i - 1]:  # not a clean boundary (offsets overlap)
                continue
            level = levels[i]
            if level < 0:
                level = levels[i] = self._classify(self.position(i))
            if level > best_level:
                best, best_level = i, level
                if level == PARAGRAPH:
                    break
        return best, best_level

    def _classify(self, pos: int) -> int:
        text = self.text
        prev_char = text[pos - 1] if pos else " "
        next_char = text[pos] if pos < len(text) else " "
        if not (prev_char.isspace() or next_char.isspace() or prev_char in _CLOSERS):
            # Fast path for boundaries inside a run of text (every boundary, in CJK text).
            if prev_char in _CJK_SENTENCE_END or (prev_char in _SENTENCE_END and _is_cjk(next_char)):
                return SENTENCE
            return SPACE if _is_cjk(prev_char) or _is_cjk(next_char) else TOKEN
        left = pos
        while left > max(0, pos - _EDGE_SCAN) and text[left - 1].isspace():
            left -= 1
        right = pos
        while right < min(len(text), pos + _EDGE_SCAN) and text[right].isspace():
            right += 1
        gap = text[left:right]
        before = left - 1
        while before > 0 and text[before] in _CLOSERS:
            before -= 1
        prev_char = text[before] if before >= 0 else ""
        next_char = text[right] if right < len(text) else ""
        if gap.count("\n") >= 2:
            return PARAGRAPH
        if prev_char in _CJK_SENTENCE_END or (
            prev_char in _SENTENCE_END and (gap or _is_cjk(next_char))
        ):
            return SENTENCE
        if "\n" in gap:
            return LINE
        if gap or _is_cjk(prev_char) or _is_cjk(next_char):
            return SPACE
        return TOKEN

    def strip(self, start: int, end: int) -> tuple[int, int]:
        text = self.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return start, end


class _HeadingLookup:
    """Heading path of the innermost section containing a position."""

    def __init__(self, sections: Sequence[Section]):
        self.sections = sorted(sections, key=lambda s: (s.start, -s.end))
        self.starts = [s.start for s in self.sections]

    def at(self, pos: int) -> tuple[str, ...]:
        i = bisect.bisect_right(self.starts, pos) - 1
        while i >= 0:  # the latest-starting section that contains pos is the innermost one
            section = self.sections[i]
            if section.end > pos:
                return tuple(section.heading_path)
            i -= 1
        return ()


def _split_long_tokens(spans: np.ndarray, too_long: np.ndarray) -> np.ndarray:
    parts, previous = [], 0
    for i in too_long:
        start, end = spans[i]
        cuts = np.arange(start, end, _MAX_TOKEN_CHARS)
        parts += [spans[previous:i], np.stack([cuts, np.minimum(cuts + _MAX_TOKEN_CHARS, end)], 1)]
        previous = i + 1
    parts.append(spans[previous:])
    return np.concatenate(parts)


def _pieces(text: str) -> list[tuple[int, int]]:
    """Cut text into (start, end) pieces of about _PIECE_CHARS, just before a whitespace run."""
    pieces, pos, n = [], 0, len(text)
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
        pieces.append((pos, min(end, n)))
        pos = min(end, n)
    return pieces
