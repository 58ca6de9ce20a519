"""Build a cross-encoder's (query, passage) input from token ids, without `post_process`.

FlagEmbedding joins the separately tokenized query and passage with the tokenizer's special
tokens (`prepare_for_model`; here the `tokenizers` backend's `post_process`). `post_process`
copies whole `Encoding`s (tokens, offsets, masks) for every pair: about a third of the tokenizing
time of a 50-candidate request. The layout it produces is fixed per tokenizer
(`<s> A </s></s> B </s>` for XLM-R, `[CLS] A [SEP] B [SEP]` with segment ids for BERT), so
`PairTemplate.derive` reads it off `post_process` once, checks it on probes of other lengths, and
pairs are then plain list concatenations. A post-processor whose output is not such a fixed
layout gives None and the caller keeps using `post_process`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PROBES = (
    ("what is a panda?", "the giant panda is a bear native to south central china"),
    ("hi", "a"),
    ("one two three four five six", "seven"),
)


@dataclass(frozen=True, slots=True)
class PairTemplate:
    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    middle_types: tuple[int, ...]
    suffix_types: tuple[int, ...]
    first_type: int
    second_type: int

    @property
    def special_tokens(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, first: Sequence[int], second: Sequence[int]) -> tuple[list[int], list[int]]:
        """(input_ids, token_type_ids) of the pair, as `post_process(first, second)` gives."""
        ids = [*self.prefix, *first, *self.middle, *second, *self.suffix]
        types = [
            *self.prefix_types,
            *([self.first_type] * len(first)),
            *self.middle_types,
            *([self.second_type] * len(second)),
            *self.suffix_types,
        ]
        return ids, types

    @classmethod
    def derive(cls, backend: Any) -> PairTemplate | None:
        """The template of `backend` (a `tokenizers.Tokenizer` with no truncation or padding), or
        None when `post_process` does not place the two sequences in a fixed frame."""
        template = None
        for first_text, second_text in PROBES:
            first = backend.encode(first_text, add_special_tokens=False)
            second = backend.encode(second_text, add_special_tokens=False)
            if not first.ids or not second.ids:
                return None
            pair = backend.post_process(first, second, add_special_tokens=True)
            if template is None:
                template = cls._locate(first.ids, second.ids, pair.ids, pair.type_ids)
                if template is None:
                    return None
            if template.build(first.ids, second.ids) != (pair.ids, pair.type_ids):
                return None
        return template

    @classmethod
    def _locate(cls, first, second, ids, types) -> PairTemplate | None:
        specials = len(ids) - len(first) - len(second)
        if specials < 0:
            return None
        found = []
        for before in range(specials + 1):
            for between in range(specials - before + 1):
                start = before + len(first) + between
                if ids[before : before + len(first)] == first and (
                    ids[start : start + len(second)] == second
                ):
                    found.append((before, between))
        if len(found) != 1:  # special ids that look like the probe's tokens: no safe frame
            return None
        before, between = found[0]
        start = before + len(first) + between
        end = start + len(second)
        first_types = set(types[before : before + len(first)])
        second_types = set(types[start:end])
        if len(first_types) != 1 or len(second_types) != 1:
            return None
        return cls(
            prefix=tuple(ids[:before]),
            middle=tuple(ids[before + len(first) : start]),
            suffix=tuple(ids[end:]),
            prefix_types=tuple(types[:before]),
            middle_types=tuple(types[before + len(first) : start]),
            suffix_types=tuple(types[end:]),
            first_type=first_types.pop(),
            second_type=second_types.pop(),
        )
