"""Token-aware chunking that keeps exact character offsets into the source text.

`Chunker.chunk(text)` tokenizes the text once (`ingestion.tokens`) and walks the token offsets.
A chunk holds at most `chunk_tokens` tokens and ends at the best boundary in the second half of
its window (`ingestion.boundaries`): a blank line, then a sentence end, a line break, whitespace
(or a CJK character boundary), and last any token boundary. The next chunk starts at the best
boundary between `overlap_tokens` and half of that before the previous end. Always
`text[start:end] == chunk.text`, without edge whitespace, and `token_count` (the chunk
re-tokenized alone, without special tokens) is at most `chunk_tokens`. The parser's sections
give each chunk the heading path and the page (PDF) where it starts.

Tokenizing uses a private copy of the tokenizer's Rust backend, so chunkers are cheap to build
and safe to use from several threads.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingestion.boundaries import TOKEN, Walk
from ingestion.tokens import private_backend, token_offsets

if TYPE_CHECKING:
    from ingestion.parsers import Section

MIN_CHUNK_TOKENS = 8  # what the chunker can do
MIN_COLLECTION_CHUNK_TOKENS = 32  # what a collection may ask for (overlap: at most half of it)
DEFAULT_MAX_CHUNK_TOKENS = 512
_VERIFY_BATCH = 64  # chunks planned ahead, then re-tokenized as one batch


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int
    end: int
    token_count: int
    ordinal: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None  # the page (from 1) where the chunk starts, for paged formats


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
        self._tokenizer = private_backend(tokenizer)
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` alone, without special tokens."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def chunk(self, text: str, sections: Sequence[Section] = ()) -> list[Chunk]:
        """Split `text` into chunks; `sections` (from the parser) give their heading paths and pages."""
        walk = Walk(text, *token_offsets(self._tokenizer, text))
        headings = _SectionLookup(s for s in sections if s.heading_path)
        pages = _SectionLookup(s for s in sections if s.page is not None)
        chunks: list[Chunk] = []
        for start, end, count in self._spans(walk):
            heading, page = headings.at(start), pages.at(start)
            chunks.append(Chunk(text[start:end], start, end, count, len(chunks),
                                tuple(heading.heading_path) if heading else (),
                                page.page if page else None))
        return chunks

    def _spans(self, walk: Walk):
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

    def _cut(self, walk: Walk, a: int, previous_cut: int) -> int:
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

    def _shrink(self, walk: Walk, a: int, cut: int) -> tuple[int, int, int, int]:
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

    def _next_start(self, walk: Walk, a: int, cut: int) -> int:
        overlap = self.overlap_tokens
        low = max(a + 1, cut - overlap)
        high = min(cut - 1, max(low, cut - overlap // 2))
        if overlap == 0 or low > high:
            return cut
        start, _ = walk.best(low, high, latest=False)
        return cut if start is None else start


class _SectionLookup:
    """The innermost of some sections that contains a position."""

    def __init__(self, sections: Iterable[Section]):
        self.sections = sorted(sections, key=lambda s: (s.start, -s.end))
        self.starts = [s.start for s in self.sections]

    def at(self, pos: int) -> Section | None:
        i = bisect.bisect_right(self.starts, pos) - 1
        while i >= 0:  # the latest-starting section that contains pos is the innermost one
            section = self.sections[i]
            if section.end > pos:
                return section
            i -= 1
        return None
