"""How long ingesting a corpus will take, said before the long part starts.

The corpus is chunked exactly as ingestion will chunk it (same `Chunker`, same sizes), and the
embedder is timed on a spread-out sample of those chunks, so the estimate reflects this machine,
this model and this corpus's chunk lengths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ingestion.chunking import Chunker

PROBE_CHUNKS = 64


@dataclass(frozen=True)
class EmbeddingEstimate:
    documents: int
    chunks: int
    chunks_per_second: float
    probe_chunks: int

    @property
    def seconds(self) -> float:
        return self.chunks / self.chunks_per_second if self.chunks_per_second > 0 else 0.0

    def message(self) -> str:
        return (
            f"embedding {self.chunks:,} chunks of {self.documents:,} documents: about "
            f"{_duration(self.seconds)} at {self.chunks_per_second:.1f} chunks/s "
            f"(measured on {self.probe_chunks} of them)"
        )


def estimate_embedding(embedder, texts: list[str], chunk_tokens: int, chunk_overlap: int) -> EmbeddingEstimate:
    chunker = Chunker(embedder.tokenizer, chunk_tokens, chunk_overlap)
    chunks = [chunk.text for text in texts for chunk in chunker.chunk(text)]
    if not chunks:
        return EmbeddingEstimate(len(texts), 0, 0.0, 0)
    step = max(1, len(chunks) // PROBE_CHUNKS)
    probe = chunks[::step][:PROBE_CHUNKS]
    embedder.embed(probe[:2], kind="passage")  # the first call pays one-off set-up costs
    started = time.perf_counter()
    embedder.embed(probe, kind="passage")
    elapsed = max(time.perf_counter() - started, 1e-6)
    return EmbeddingEstimate(len(texts), len(chunks), len(probe) / elapsed, len(probe))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
