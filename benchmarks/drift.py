"""How far one engine's reranker scores drift from another's: the largest score difference and
Kendall's tau of each query's ranking. Standard library only: `benchmarks/rerank.py` imports it
in its parent process, and the tests of the ONNX runtime use the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def kendall_tau(first: Sequence[float], second: Sequence[float]) -> float:
    """Kendall's tau-b of two scorings of the same items (ties counted as scipy does); 1.0 when
    they order every pair alike. O(n^2), which is nothing for a query's 50 candidates."""
    if len(first) != len(second):
        raise ValueError(f"cannot compare {len(first)} scores with {len(second)}")
    concordant = discordant = ties_first = ties_second = 0
    for i in range(len(first)):
        for j in range(i + 1, len(first)):
            a = (first[i] > first[j]) - (first[i] < first[j])
            b = (second[i] > second[j]) - (second[i] < second[j])
            if a == 0 and b == 0:
                continue
            if a == 0:
                ties_first += 1
            elif b == 0:
                ties_second += 1
            elif a == b:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt(
        (concordant + discordant + ties_first) * (concordant + discordant + ties_second)
    )
    return 1.0 if denominator == 0 else (concordant - discordant) / denominator


@dataclass(frozen=True)
class Drift:
    max_abs_diff: float
    tau_mean: float
    tau_min: float

    def __str__(self) -> str:
        return f"max |diff| {self.max_abs_diff:.2e}, tau mean {self.tau_mean:.4f} min {self.tau_min:.4f}"


def score_drift(
    reference: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]]
) -> Drift:
    """Drift of `candidate` from `reference`: one list of scores per query, same order in both."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError("need the same, non-zero number of queries on both sides")
    diffs, taus = [0.0], []
    for expected, actual in zip(reference, candidate, strict=True):
        if len(expected) != len(actual):
            raise ValueError(f"cannot compare {len(actual)} scores with {len(expected)}")
        diffs.extend(abs(a - b) for a, b in zip(expected, actual, strict=True))
        taus.append(kendall_tau(expected, actual))
    return Drift(max(diffs), sum(taus) / len(taus), min(taus))
