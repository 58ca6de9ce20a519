"""How a reranker's features are cut into batches: padded tokens per batch by device and dtype,
rows for a batch, and the batches launched but not yet read back (`Reranker.launch`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# Padded tokens per batch (rows x longest row). On a CPU one fp32 row of a few hundred tokens
# already fills the cores, so small batches of similar length cost nothing and pad little; bf16
# matrix units want taller matrices. 50 candidates of 40-400 tokens, XLM-R base, 2 cores: fp32 5.5
# pairs/s under 4096, 6.5 under 1024; bf16 20.4 under 4096, 15.2 under 1024 (docs/benchmarks.md).
# A GPU needs big batches to fill it.
CPU_TOKEN_BUDGET = 1_024
CPU_LOW_PRECISION_TOKEN_BUDGET = 4_096
GPU_TOKEN_BUDGET = 32_768


def default_token_budget(device: str, dtype: torch.dtype = torch.float32) -> int:
    if not str(device).startswith("cpu"):
        return GPU_TOKEN_BUDGET
    return CPU_TOKEN_BUDGET if dtype == torch.float32 else CPU_LOW_PRECISION_TOKEN_BUDGET


def batch_rows(longest: int, max_rows: int, token_budget: int) -> int:
    """Rows for a batch whose longest feature has `longest` tokens (a longer one runs alone)."""
    return max(1, min(max_rows, token_budget // max(1, longest)))


@dataclass(slots=True)
class Launched:
    """Batches whose forward has run or is queued on the device (`Reranker.launch`)."""

    scores: list[Any]  # by feature; filled as the outputs are read back
    pending: list[tuple[list[int], Any]] = field(default_factory=list)  # (indices, output)
