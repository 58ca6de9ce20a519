"""SIGKILL a worker mid-ingestion 5 times; every acknowledged document ends indexed exactly once."""

import pytest

from scripts.crash_test import run

pytestmark = pytest.mark.slow


def test_worker_killed_at_random_points_loses_and_doubles_nothing(migrated_url, tmp_path, minilm_path):
    # Five kills in the suite, split over the two databases; scripts/crash_test.py runs 20.
    trials = 3 if migrated_url.startswith("sqlite") else 2
    report = run(migrated_url, tmp_path / "data", minilm_path, trials=trials, seed=7)
    assert report["kills"] == trials
    assert report["problems"] == []
