"""Paired comparison of two stages on the same queries: wins, losses, ties and a bootstrap CI.

Both stages are scored on every judged query (`metrics.per_query`), so the comparison is paired:
the per-query differences `other - baseline` are what is summarised.

- wins / losses / ties: queries where the other stage scores higher / lower / the same (within
  `TIE_TOLERANCE`, so float noise of equal rankings is a tie);
- the paired bootstrap 95 % CI of the mean difference: the queries resampled with replacement
  `resamples` times (numpy's default generator, seeded), the 2.5th and 97.5th percentiles of
  the resampled means. A CI above 0 says the gain is unlikely to be an accident of the queries.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

RESAMPLES = 10_000
SEED = 0
TIE_TOLERANCE = 1e-9
_BLOCK = 1_000  # resamples drawn at once: bounded memory on large query sets


def bootstrap_ci(differences, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `differences` (one per query)."""
    values = np.asarray(differences, dtype=np.float64)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, _BLOCK):
        count = min(_BLOCK, resamples - start)
        picks = rng.integers(0, values.size, size=(count, values.size))
        means[start : start + count] = values[picks].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def paired_comparison(
    baseline: Mapping[str, float],
    other: Mapping[str, float],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict:
    """`other` against `baseline`, both {query id: metric value} over the same queries."""
    if set(baseline) != set(other):
        raise ValueError("a paired comparison needs the same queries in both stages")
    queries = sorted(baseline)
    differences = np.array([other[q] - baseline[q] for q in queries], dtype=np.float64)
    low, high = bootstrap_ci(differences, resamples=resamples, seed=seed)
    return {
        "queries": len(queries),
        "wins": int((differences > TIE_TOLERANCE).sum()),
        "losses": int((differences < -TIE_TOLERANCE).sum()),
        "ties": int((np.abs(differences) <= TIE_TOLERANCE).sum()),
        "mean_difference": float(differences.mean()) if len(queries) else 0.0,
        "ci95": [low, high],
        "resamples": resamples,
        "seed": seed,
    }


def paired_against_first(per_query: dict[str, Mapping[str, float]], *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict]:
    """{stage: {query: value}}, stages in report order -> each stage after the first against the
    first (its `baseline`), rounded for the report."""
    names = list(per_query)
    if len(names) < 2:
        return {}
    first = per_query[names[0]]
    compared = {}
    for name in names[1:]:
        comparison = paired_comparison(first, per_query[name], resamples=resamples, seed=seed)
        comparison["mean_difference"] = round(comparison["mean_difference"], 5)
        comparison["ci95"] = [round(value, 5) for value in comparison["ci95"]]
        compared[name] = {"baseline": names[0], **comparison}
    return compared
