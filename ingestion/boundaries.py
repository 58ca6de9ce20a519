"""Where a chunk may end: the boundary level at each token boundary of a text.

Levels, best first: a blank line (PARAGRAPH), a sentence end (SENTENCE), a line break (LINE),
whitespace or a CJK character boundary (SPACE), any other token boundary (TOKEN). `Walk` holds
a text's token offsets and classifies boundaries lazily, as the chunker asks for them.
"""

from __future__ import annotations

_EDGE_SCAN = 64  # how far to look for the whitespace around a boundary

# Boundary levels, best first.
PARAGRAPH, SENTENCE, LINE, SPACE, TOKEN = 4, 3, 2, 1, 0
_SENTENCE_END = frozenset(".!?。！？")
_CJK_SENTENCE_END = frozenset("。！？")
_CLOSERS = frozenset("\"')]}»”’」』）")


def is_cjk(char: str) -> bool:
    """Han, kana, hangul and full-width forms: scripts written without spaces between words."""
    return (
        "\u2e80" <= char <= "\u9fff"
        or "\uac00" <= char <= "\ud7af"
        or "\uf900" <= char <= "\ufaff"
        or "\uff00" <= char <= "\uffef"
        or "\U00020000" <= char <= "\U0003134f"
    )


class Walk:
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
            if prev_char in _CJK_SENTENCE_END or (prev_char in _SENTENCE_END and is_cjk(next_char)):
                return SENTENCE
            return SPACE if is_cjk(prev_char) or is_cjk(next_char) else TOKEN
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
            prev_char in _SENTENCE_END and (gap or is_cjk(next_char))
        ):
            return SENTENCE
        if "\n" in gap:
            return LINE
        if gap or is_cjk(prev_char) or is_cjk(next_char):
            return SPACE
        return TOKEN

    def strip(self, start: int, end: int) -> tuple[int, int]:
        text = self.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return start, end

