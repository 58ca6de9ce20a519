"""Packed (unpadded) CPU batches score as padded batches do, to float rounding."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from search_service.rerankers import load_reranker
from search_service.rerankers.runtimes import packed
from tests.rerankers.conftest import PARITY_PAIRS


@pytest.fixture
def padded(shared_reranker):
    reranker = copy.deepcopy(shared_reranker)
    reranker.packed = False
    return reranker


def test_cpu_encoders_load_packed(shared_reranker):
    assert shared_reranker.packed
    assert shared_reranker.model.config._attn_implementation == packed.ATTENTION


@pytest.mark.parametrize("batch_size", [1, 3, 7, len(PARITY_PAIRS)])
def test_packed_scores_equal_padded_scores(shared_reranker, padded, batch_size):
    expected = padded.score_pairs(PARITY_PAIRS, batch_size=batch_size)
    got = shared_reranker.score_pairs(PARITY_PAIRS, batch_size=batch_size)
    assert got == pytest.approx(expected, abs=1e-5)
    assert len({round(value, 3) for value in got}) > len(got) // 2  # pairs really differ


def test_positions_restart_per_pair_as_xlmr_counts_them(shared_reranker):
    pad = shared_reranker.config.pad_token_id
    features = shared_reranker.tokenize(PARITY_PAIRS[:4], 64)
    # A pad id inside a pair (a literal "<pad>" in the text) does not advance the position,
    # exactly as XLM-R's create_position_ids_from_input_ids counts them.
    first = features[0]
    features[0] = type(first)(
        first.input_ids[:2] + [pad] + first.input_ids[2:], [0] * (len(first) + 1)
    )
    batch = packed.collate(features, pad)
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings

    bounds = batch["cu_seq_lens_q"].tolist()
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        ids = torch.tensor([features[index].input_ids])
        expected = XLMRobertaEmbeddings.create_position_ids_from_input_ids(ids, pad)
        assert batch["position_ids"][0, start:end].tolist() == expected[0].tolist()


def test_a_pad_token_inside_a_pair_scores_as_padded(shared_reranker, padded):
    pairs = [("what is panda?", "pandas <pad> eat bamboo"), ("q", "a short one")]
    assert shared_reranker.score_pairs(pairs, batch_size=2) == pytest.approx(
        padded.score_pairs(pairs, batch_size=2), abs=1e-5
    )


def test_the_same_model_still_runs_padded_batches(shared_reranker):
    # One loaded model serves both: without pair boundaries the attention is plain SDPA.
    reranker = copy.deepcopy(shared_reranker)
    features = reranker.tokenize(PARITY_PAIRS[:5], 512)
    reranker.packed = False
    padded_logits = reranker.forward(reranker.collate(features))
    reranker.packed = True
    packed_logits = reranker.forward(reranker.collate(features))
    torch.testing.assert_close(packed_logits, padded_logits, atol=1e-5, rtol=0)


def test_eager_attention_and_bfloat16(tiny_reranker_dir):
    eager = load_reranker(tiny_reranker_dir, device="cpu", attn_implementation="eager")
    assert not eager.packed  # only an SDPA model is switched
    half = load_reranker(tiny_reranker_dir, device="cpu", dtype="bfloat16")
    assert half.packed
    reference = copy.deepcopy(half)
    reference.packed = False
    assert half.score_pairs(PARITY_PAIRS) == pytest.approx(
        reference.score_pairs(PARITY_PAIRS), abs=0.05
    )
