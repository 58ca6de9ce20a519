"""The `added_tokens_decoder` block every tiny checkpoint's tokenizer_config.json carries."""

from __future__ import annotations

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
