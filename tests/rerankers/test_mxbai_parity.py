"""The `mxbai-rerank` family against the reference package, mxbai-rerank 0.1.6's `MxbaiRerankV2`,
on the tiny Qwen2 checkpoint, in fp32 on CPU: the same input ids and the same raw scores (1e-4),
at the default max_length (8,192 within the positions) and short ones, with and without an
instruction, with long documents, a long query, an instruction longer than the query budget, a
checkpoint whose positions clip max_length, in one mixed-length batch and in the package's own
length-bucketed batches.

The reference runs in its own transformers 4.57 env (search_service/testing/mxbai_env.py, built
once and cached), every job in one subprocess (tests/reference/score_mxbai.py).
"""

from __future__ import annotations

import pytest

from search_service.rerankers import load_reranker, sigmoid
from tests.reference.env import mxbai_reference
from tests.rerankers.conftest import PARITY_PAIRS
from tests.rerankers.test_mxbai_family import limited_positions

pytestmark = pytest.mark.slow

# A score computed in a padded batch runs other matmul/attention kernels than the reference's: 1.6e-5
# apart on an AVX-512 CPU (AMD EPYC Zen 4), below 1e-5 on AVX2 ones.
TOLERANCE = 1e-4
REFERENCE_PADDING_DRIFT = 1e-3
INSTRUCTION = "Find passages about animals."
# Longer than the query budget at max_length 128 (96 tokens): the query itself is cut away.
LONG_INSTRUCTION = "Judge whether the document answers the question about the world. " * 20
# The pairs that stay under 1,000 tokens at the default max_length; the others have long documents.
SHORT = [pair for pair in PARITY_PAIRS if len(pair[1]) < 1000]
LONG = [pair for pair in PARITY_PAIRS if len(pair[1]) >= 1000]
DOCUMENTS = [document for _, document in PARITY_PAIRS]
QUERY = "what is panda?"

# name: (job, our score_pairs options); the job's max_length is omitted for the default.
PREDICT_JOBS = {
    "short pairs, default max_length": ({"pairs": SHORT}, {}),
    "long documents, default max_length": ({"pairs": LONG}, {}),
    "all pairs, max_length 512": ({"pairs": PARITY_PAIRS, "max_length": 512}, {"max_length": 512}),
    "instruction, max_length 128": (
        {"pairs": PARITY_PAIRS, "max_length": 128, "instruction": INSTRUCTION},
        {"max_length": 128, "prompt": INSTRUCTION},
    ),
    "long instruction, max_length 128": (
        {"pairs": PARITY_PAIRS, "max_length": 128, "instruction": LONG_INSTRUCTION},
        {"max_length": 128, "prompt": LONG_INSTRUCTION},
    ),
}
DRIFT_JOBS = ("short pairs, default max_length", "all pairs, max_length 512")
INPUT_JOBS = {
    "default": ({}, {}),
    "instruction, max_length 128": (
        {"max_length": 128, "instruction": INSTRUCTION},
        {"max_length": 128, "prompt": INSTRUCTION},
    ),
    "long instruction, max_length 128": (
        {"max_length": 128, "instruction": LONG_INSTRUCTION},
        {"max_length": 128, "prompt": LONG_INSTRUCTION},
    ),
}


@pytest.fixture(scope="module")
def small_dir(mxbai_dir, tmp_path_factory):
    """192 positions: the template (113 tokens) leaves 79 to the pair."""
    return limited_positions(mxbai_dir, tmp_path_factory.mktemp("small") / "mxbai-rerank-192", 192)


@pytest.fixture(scope="module")
def small(small_dir):
    return load_reranker(small_dir, device="cpu")


@pytest.fixture(scope="module")
def reference(mxbai_dir, small_dir) -> dict[str, object]:
    jobs = {f"each {name}": {"kind": "each", **job} for name, (job, _) in PREDICT_JOBS.items()}
    # The reference's own one-batch scores, for the drift its padding causes (see below).
    jobs |= {f"batch {name}": {"kind": "predict", **PREDICT_JOBS[name][0]} for name in DRIFT_JOBS}
    jobs |= {
        f"inputs {name}": {"kind": "inputs", "pairs": PARITY_PAIRS, **job}
        for name, (job, _) in INPUT_JOBS.items()
    }
    jobs["normalized"] = {"kind": "predict", "pairs": SHORT[:4], "normalize": True}
    jobs["rank"] = {
        "kind": "rank", "query": QUERY, "documents": DOCUMENTS, "batch_size": 4, "max_length": 512
    }  # fmt: skip
    small = {"pairs": PARITY_PAIRS, "checkpoint": str(small_dir)}
    jobs["positions"] = {"kind": "each", **small}
    jobs["positions inputs"] = {"kind": "inputs", **small}
    results = mxbai_reference(mxbai_dir, list(jobs.values()))
    return dict(zip(jobs, results, strict=True))


def ids_of(reranker, pairs, max_length=None, **options) -> list[list[int]]:
    length = reranker._check_max_length(max_length)
    return [feature.input_ids for feature in reranker.tokenize(pairs, length, **options)]


@pytest.mark.parametrize("name", list(INPUT_JOBS))
def test_inputs_equal_the_references(mxbai, reference, name):
    *rows, meta = reference[f"inputs {name}"]
    options = INPUT_JOBS[name][1]
    assert meta == {
        "max_length": mxbai._check_max_length(options.get("max_length")),
        "yes": mxbai.yes_id,
        "no": mxbai.no_id,
    }
    assert ids_of(mxbai, PARITY_PAIRS, **options) == rows


@pytest.mark.parametrize("name", list(PREDICT_JOBS))
def test_scores_equal_the_references_in_any_batching(mxbai, reference, name):
    """Ours in one mixed-length batch and in batches of 3 against the reference's score of each
    pair alone (unpadded); the reference's own mixed-length batch moves by RoPE rounding."""
    job, options = PREDICT_JOBS[name]
    expected = reference[f"each {name}"]
    assert len({round(score, 3) for score in expected}) >= len(expected) - 2  # distinct scores
    for batch_size in (32, 3):
        ours = mxbai.score_pairs(job["pairs"], batch_size=batch_size, **options)
        assert ours == pytest.approx(expected, abs=TOLERANCE), batch_size
    if name in DRIFT_JOBS:
        # The reference numbers positions from the first pad: its batch drifts from its own
        # unpadded scores (and from ours) by float32 RoPE rounding at large positions.
        assert reference[f"batch {name}"] == pytest.approx(expected, abs=REFERENCE_PADDING_DRIFT)


def test_scores_equal_the_references_own_batching(mxbai, reference):
    ours = mxbai.score(QUERY, DOCUMENTS, max_length=512, batch_size=5)
    assert ours == pytest.approx(reference["rank"], abs=REFERENCE_PADDING_DRIFT)


def test_positions_clip_max_length_as_in_the_reference(small, reference):
    *rows, meta = reference["positions inputs"]
    assert meta["max_length"] == small.max_length == 192 - small.template.length
    assert ids_of(small, PARITY_PAIRS) == rows
    assert max(len(row) for row in rows) == 192
    ours = small.score_pairs(PARITY_PAIRS)
    assert ours == pytest.approx(reference["positions"], abs=TOLERANCE)


def test_the_packages_normalized_scale_is_shifted(mxbai, reference):
    """`predict(normalize=True)` is sigmoid(raw - estimated_max / 2), estimated_max 12 for a
    checkpoint it does not know; `normalize=True` here is sigmoid(raw), as for every family."""
    raw = mxbai.score_pairs(SHORT[:4])
    assert reference["normalized"] == pytest.approx([sigmoid(s - 6.0) for s in raw], abs=1e-6)
    ours = mxbai.score_pairs(SHORT[:4], normalize=True)
    assert ours == pytest.approx([sigmoid(s) for s in raw], abs=1e-7)
    assert all(theirs < mine for theirs, mine in zip(reference["normalized"], ours, strict=True))
