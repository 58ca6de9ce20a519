"""The embedding protocol every backend implements."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

Kind = Literal["query", "passage"]


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dimension: int
    max_seq_length: int
    tokenizer: object  # a Hugging Face fast tokenizer, used for token-aware chunking
    num_special_tokens: int

    def embed(self, texts: list[str], kind: Kind = "passage", *, show_progress: bool = False) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text, in order."""
        ...
