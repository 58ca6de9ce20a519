"""Our encoder reranker scores as FlagEmbedding 1.4.2's FlagReranker does (in the reference env)."""

from __future__ import annotations

import pytest

from tests.reference.env import flag_scores_batch

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4
JOBS = {
    "default": {},
    "normalize": {"normalize": True},
    "max_length_64": {"max_length": 64},
    "max_length_64_normalize": {"max_length": 64, "normalize": True},
    "batch_size_3": {"batch_size": 3},
}


@pytest.fixture(scope="module")
def flag_scores(tiny_reranker_dir, parity_pairs) -> dict[str, list[float]]:
    """Every reference job in one subprocess: FlagEmbedding takes ~10 s just to import."""
    jobs = [
        {"pairs": [list(pair) for pair in parity_pairs], **options} for options in JOBS.values()
    ]
    return dict(zip(JOBS, flag_scores_batch(tiny_reranker_dir, jobs), strict=True))


@pytest.mark.parametrize("job", JOBS)
def test_scores_match_flag_reranker(shared_reranker, parity_pairs, flag_scores, job):
    ours = shared_reranker.score_pairs(parity_pairs, **JOBS[job])

    assert ours == pytest.approx(flag_scores[job], abs=TOLERANCE)


def test_reference_scores_are_not_degenerate(flag_scores):
    # Parity means little if the tiny model gives every pair nearly the same score.
    scores = flag_scores["default"]
    assert max(scores) - min(scores) > 0.5
    assert len({round(score, 3) for score in scores}) >= len(scores) - 2


def test_truncation_changes_scores(flag_scores, parity_pairs):
    # The long pairs must really be cut differently at 64 and 512 tokens, or this proves nothing.
    long_pairs = [i for i, (q, p) in enumerate(parity_pairs) if len(q) + len(p) > 600]
    assert long_pairs
    assert any(
        abs(flag_scores["default"][i] - flag_scores["max_length_64"][i]) > 1e-3 for i in long_pairs
    )


def test_score_by_query_matches_pairs(shared_reranker, parity_pairs, flag_scores):
    query = parity_pairs[0][0]
    indices = [i for i, (q, _) in enumerate(parity_pairs) if q == query]
    ours = shared_reranker.score(query, [parity_pairs[i][1] for i in indices])

    assert ours == pytest.approx([flag_scores["default"][i] for i in indices], abs=TOLERANCE)
