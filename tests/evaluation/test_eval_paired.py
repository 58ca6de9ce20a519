"""Paired comparison of two stages (evaluation/paired.py): wins/losses/ties and the seeded
paired bootstrap CI, checked by hand and against scipy's bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from search_service.evaluation.paired import bootstrap_ci, paired_against_first, paired_comparison


def test_wins_losses_and_ties_are_counted_per_query():
    baseline = {"a": 0.5, "b": 0.2, "c": 1.0, "d": 0.0, "e": 0.3}
    other = {"a": 0.7, "b": 0.1, "c": 1.0, "d": 0.0, "e": 0.3 + 1e-12}  # float noise is a tie
    result = paired_comparison(baseline, other, resamples=2_000)
    assert (result["wins"], result["losses"], result["ties"], result["queries"]) == (1, 1, 3, 5)
    assert result["mean_difference"] == pytest.approx((0.2 - 0.1) / 5)
    low, high = result["ci95"]
    assert low <= result["mean_difference"] <= high
    with pytest.raises(ValueError, match="same queries"):
        paired_comparison(baseline, {"a": 1.0})


def test_the_bootstrap_is_seeded_and_agrees_with_scipy():
    rng = np.random.default_rng(7)
    differences = rng.normal(0.03, 0.2, size=300)
    ours = bootstrap_ci(differences, resamples=10_000, seed=3)
    assert ours == bootstrap_ci(differences, resamples=10_000, seed=3)  # the same seed, the same CI
    assert ours != bootstrap_ci(differences, resamples=10_000, seed=4)
    theirs = stats.bootstrap((differences,), np.mean, n_resamples=10_000, method="percentile",
                             confidence_level=0.95, random_state=1).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.004)
    # and both agree with the normal approximation, mean +- 1.96 standard errors
    half = 1.96 * differences.std() / np.sqrt(differences.size)
    assert ours == pytest.approx((differences.mean() - half, differences.mean() + half), abs=0.004)


def test_a_clear_gain_has_a_ci_above_zero_and_none_has_a_point():
    assert bootstrap_ci(np.full(50, 0.1)) == pytest.approx((0.1, 0.1))
    gain = np.r_[np.full(60, 0.05), np.full(20, -0.02), np.zeros(20)]
    low, high = bootstrap_ci(gain)
    assert 0 < low < gain.mean() < high


def test_every_stage_is_compared_with_the_first():
    per_query = {"dense": {"q1": 0.5, "q2": 0.4}, "sparse": {"q1": 0.6, "q2": 0.4}, "hybrid": {"q1": 0.4, "q2": 0.1}}
    compared = paired_against_first(per_query, resamples=500)
    assert set(compared) == {"sparse", "hybrid"}
    assert compared["sparse"]["baseline"] == "dense" and compared["sparse"]["wins"] == 1
    assert compared["hybrid"]["losses"] == 2 and compared["hybrid"]["mean_difference"] == -0.2
    assert paired_against_first({"dense": {"q1": 1.0}}) == {}
