"""What the tiny checkpoints' tokenizers share: the `added_tokens_decoder` block of
tokenizer_config.json, and the deterministic BPE loop that learns their merges."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence


def added_tokens_decoder(tokens: Sequence[str], *, lstrip: Iterable[str] = ()) -> dict:
    """Special tokens at ids 0..n-1, as `save_pretrained` writes them (`lstrip` for XLM-R's <mask>)."""
    lstrip = set(lstrip)
    return {
        str(index): {
            "content": token,
            "lstrip": token in lstrip,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for index, token in enumerate(tokens)
    }


def learn_merges(counts: Counter[str], num_merges: int) -> list[tuple[str, str]]:
    """Up to `num_merges` BPE merges over the words of `counts` (each weighted by its count),
    most frequent pair first, ties broken by the pair's text (the `tokenizers` trainer's ids
    depend on hash order)."""
    words = {word: list(word) for word in counts}
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, pieces in words.items():
            for pair in itertools.pairwise(pieces):
                pairs[pair] += counts[word]
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for word, pieces in words.items():
            merged, index = [], 0
            while index < len(pieces):
                if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == best:
                    merged.append(pieces[index] + pieces[index + 1])
                    index += 2
                else:
                    merged.append(pieces[index])
                    index += 1
            words[word] = merged
    return merges
