"""The lightweight family (bge-reranker-v2.5-gemma2-lightweight) on our own model code.

The parity references are computed in the FlagEmbedding reference env (transformers 4.46) by
`LightWeightFlagLLMReranker(checkpoint, use_fp16=False, devices=['cpu'])` on a tiny checkpoint saved
by FlagEmbedding's own `CostWiseGemmaForCausalLM` (those tests are `slow`). The fast tests use the
same tiny checkpoint saved by our class (`make_local_lightweight_reranker`). Loading by hub id
through an offline Hugging Face cache is tested with the other decoder families in
test_hub_loading.py.
"""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers import detect_family, load_reranker
from search_service.rerankers.families.gemma2_lightweight import (
    LightweightGemma2Config,
    attention_masks,
    compress_tokens,
)
from search_service.rerankers.families.lightweight import DEFAULT_PROMPT
from search_service.testing.tiny_lightweight import (
    AUTO_MAP,
    TINY_CONFIG,
)
from tests.reference.checkpoints import make_tiny_lightweight_reranker
from tests.reference.env import run_reference_script

TOLERANCE = 1e-4
LAST = TINY_CONFIG["num_hidden_layers"]  # 4: heads for layers 1..4
PROMPT = "Is passage B relevant to query A? Answer Yes or No."
PUBLISHED_CONFIG = {  # the fields detection and the config read, as the published checkpoint has
    "architectures": ["CostWiseGemmaForCausalLM"],
    "auto_map": AUTO_MAP,
    "model_type": "cost_wise_gemma",
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "num_hidden_layers": 42,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "rope_theta": 10000.0,
    "start_layer": 8,
    "layer_sep": 1,
    "layer_wise": True,
    "cache_implementation": "hybrid",
}
# FlagEmbedding compute_score kwargs; ours are the same, cutoff_layers defaulting to the last.
FLAG_JOBS = {
    "default": {},
    "normalize": {"normalize": True},
    "layer_2": {"cutoff_layers": [2]},
    "layers_1_3_4": {"cutoff_layers": [1, 3, 4]},
    "unsorted_4_2_2": {"cutoff_layers": [4, 2, 2]},
    "compress_2": {"compress_ratio": 2, "compress_layers": [1, 2]},
    "compress_4_layer_3_normalize": {
        "compress_ratio": 4,
        "compress_layers": [2],
        "cutoff_layers": [3],
        "normalize": True,
    },
    "compress_8_layers_2_4": {
        "compress_ratio": 8,
        "compress_layers": [1, 3],
        "cutoff_layers": [2, 4],
    },
    "prompt": {"prompt": PROMPT, "cutoff_layers": [3]},
    "prompt_max_length_32_compress": {
        "prompt": PROMPT,
        "max_length": 32,
        "compress_ratio": 2,
        "compress_layers": [2],
    },
    "max_length_64": {"max_length": 64},
    "query_max_length_8": {"query_max_length": 8, "max_length": 48},
    "batch_size_3": {
        "batch_size": 3,
        "cutoff_layers": [1],
        "compress_ratio": 2,
        "compress_layers": [1],
    },
}
SOFTCAP_JOB = {"attn_implementation": "eager", "cutoff_layers": [3]}

slow = pytest.mark.slow


def _ours(reranker, pairs, job: dict) -> list[float] | list[list[float]]:
    """Score as FlagEmbedding's compute_score returns: a list, or one list per layer."""
    options = dict(job)
    layers = options.pop("cutoff_layers", [LAST])
    if len(set(layers)) == 1:
        return reranker.score_pairs(pairs, cutoff_layers=layers, **options)
    # score_layers takes one query: one call per pair, then one list per layer, ascending.
    columns = [reranker.score_layers(q, [p], layers, **options) for q, p in pairs]
    return [[column[layer][0] for column in columns] for layer in sorted(set(layers))]


# -- fast: detection, config and the model's pieces ------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        PUBLISHED_CONFIG,
        {"architectures": ["CostWiseGemmaForCausalLM"]},
        {"auto_map": AUTO_MAP},
        {"model_type": "cost_wise_gemma"},
    ],
)
def test_detects_lightweight(config):
    assert detect_family(config) == "lightweight"


def test_plain_gemma2_is_not_lightweight():
    config = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2"}
    assert detect_family(config) != "lightweight"


def test_config_reads_the_published_layout():
    config = LightweightGemma2Config.from_dict(PUBLISHED_CONFIG)
    assert config.score_layers == list(range(8, 43))  # 35 heads, head i for the i-th layer asked
    assert config.layer_types[:3] == ["sliding_attention", "full_attention", "sliding_attention"]
    assert config.rope_parameters["rope_theta"] == 10000.0
    assert (config.attn_logit_softcapping, config.final_logit_softcapping) == (50.0, 30.0)


def test_compress_tokens_averages_passage_groups():
    # Row 0: query 2, passage 5, prompt 2 (9 tokens); row 1: query 1, passage 2, prompt 1 + 5 pads.
    hidden = torch.arange(2 * 9 * 1, dtype=torch.float32).reshape(2, 9, 1)
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5])
    compressed, new_mask = compress_tokens(hidden, mask, [2, 1], [2, 1], ratio=2)
    row0 = [0, 1, (2 + 3) / 2, (4 + 5) / 2, 6, 7, 8]
    row1 = [9, (10 + 11) / 2, 12, 0, 0, 0, 0]
    assert compressed[..., 0].tolist() == [row0, row1]
    assert new_mask.tolist() == [[1] * 7, [1] * 3 + [0] * 4]


def test_compress_tokens_keeps_an_empty_passage():
    hidden = torch.randn(1, 4, 3)
    compressed, mask = compress_tokens(hidden, torch.ones(1, 4, dtype=torch.long), [2], [2], 4)
    assert torch.equal(compressed, hidden) and mask.tolist() == [[1, 1, 1, 1]]


def test_attention_masks_are_causal_padded_and_sliding():
    masks = attention_masks(torch.tensor([[1, 1, 1, 1, 0]]), torch.float32, sliding_window=2)
    allowed = {name: (mask[0, 0] == 0).int().tolist() for name, mask in masks.items()}
    assert allowed["full_attention"][3] == [1, 1, 1, 1, 0]
    assert allowed["sliding_attention"][3] == [0, 0, 1, 1, 0]
    assert allowed["full_attention"][1] == [1, 1, 0, 0, 0]


# -- fast: the reranker on the checkpoint saved by our class ---------------------------------------


@pytest.fixture(scope="module")
def local_dir(lightweight_local_dir):
    return lightweight_local_dir


@pytest.fixture(scope="module")
def local(lightweight_local):
    return lightweight_local


@pytest.fixture(scope="module")
def query_passages(parity_pairs):
    query = parity_pairs[0][0]
    return query, [passage for q, passage in parity_pairs if q == query] + ["", "hi " * 300]


def test_defaults_match_flag_embedding(local):
    assert local.cutoff_layer == LAST
    assert (
        local.prompt == DEFAULT_PROMPT == "Predict whether passage B contains an answer to query A."
    )
    assert (local.compression.ratio, local.compression.layers) == (1, (8,))
    assert local.max_length == 512
    assert local.model.config._attn_implementation == "sdpa"
    assert local.model.config.attn_logit_softcapping is None  # FlagEmbedding's effective setting


def test_head_i_scores_the_i_th_requested_layer(local_dir, local, query_passages):
    query, passages = query_passages
    alone = local.score(query, passages, cutoff_layers=LAST)
    together = local.score_layers(query, passages, cutoff_layers=[LAST, 2, 2])
    assert list(together) == [2, LAST]
    assert together[2] == pytest.approx(local.score(query, passages, cutoff_layers=2), abs=1e-6)
    assert together[LAST] != pytest.approx(alone, abs=1e-3)  # head 1, not head 0
    swapped = load_reranker(local_dir, device="cpu")
    swapped.model.lm_head[0].load_state_dict(local.model.lm_head[1].state_dict())
    assert swapped.score(query, passages, cutoff_layers=[LAST]) == pytest.approx(
        together[LAST], abs=1e-6
    )


def test_compression_options(local, query_passages):
    query, passages = query_passages
    plain = local.score(query, passages, cutoff_layers=3)
    compressed = local.score(
        query, passages, cutoff_layers=3, compress_ratio=2, compress_layers=[1]
    )
    assert max(abs(a - b) for a, b in zip(plain, compressed, strict=True)) > 1e-3
    # No effect: ratio 1, layer 0, or layers at or above the deepest requested one.
    for options in (
        {"compress_ratio": 1, "compress_layers": [1]},
        {"compress_ratio": 2, "compress_layers": [0, 3, 4]},
    ):
        assert local.score(query, passages, cutoff_layers=3, **options) == pytest.approx(
            plain, abs=1e-6
        )


def test_several_layers_from_one_pass_equal_each_scored_alone(local, parity_pairs):
    # Compression pools the passage by each row's own query and prompt lengths, so it runs too;
    # head i scores the i-th layer. One layer per call is in the contract test.
    options = {"max_length": 64, "compress_ratio": 2, "compress_layers": [1, 2]}
    expected_layers = [
        local.score_pairs_layers([pair], [2, LAST], **options) for pair in parity_pairs
    ]
    expected_2 = [scores[2][0] for scores in expected_layers]
    expected_last = [scores[LAST][0] for scores in expected_layers]
    for column in (expected_2, expected_last):  # a swap of two pairs would show
        assert min(abs(a - b) for a, b in itertools.combinations(column, 2)) > 1e-3
    for batch_size in (1, 2, 5, len(parity_pairs)):
        layers = local.score_pairs_layers(parity_pairs, [2, LAST], batch_size=batch_size, **options)
        assert layers[2] == pytest.approx(expected_2, abs=TOLERANCE), batch_size
        assert layers[LAST] == pytest.approx(expected_last, abs=TOLERANCE), batch_size
    assert local.score_layers("q", [], cutoff_layers=[3, 1]) == {1: [], 3: []}


@pytest.mark.parametrize(
    "options",
    [
        {"cutoff_layers": 0},
        {"cutoff_layers": [LAST + 1]},
        {"cutoff_layers": [2, 3]},
        {"cutoff_layers": True},
        {"compress_ratio": 0},
        {"compress_ratio": 2.5},
        {"compress_layers": ["1"]},
    ],
)
def test_bad_options_are_refused(local, options):
    with pytest.raises(ConfigurationError):
        local.score("q", ["p"], **options)


def test_attention_softcapping_is_an_option(local_dir, local, query_passages):
    query, passages = query_passages
    capped = load_reranker(local_dir, device="cpu", attn_logit_softcapping=True)
    eager = load_reranker(local_dir, device="cpu", attn_implementation="eager")
    config = capped.model.config
    assert (config._attn_implementation, config.attn_logit_softcapping) == ("eager", 10.0)
    default = local.score(query, passages)
    # Eager attention without the cap is SDPA up to rounding: the cap is the only difference.
    assert eager.score(query, passages) == pytest.approx(default, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(capped.score(query, passages), default)) > 1e-2
    for options in ({"attn_implementation": "sdpa"}, {"attn_implementation": "flash_attention_2"}):
        with pytest.raises(ConfigurationError):
            load_reranker(local_dir, device="cpu", attn_logit_softcapping=True, **options)


def test_broken_checkpoints_are_model_load_errors(local_dir, tmp_path):
    missing_head = tmp_path / "missing-head"
    shutil.copytree(local_dir, missing_head)
    weights = load_file(missing_head / "model.safetensors")
    del weights["lm_head.3.linear_head.weight"]
    save_file(weights, missing_head / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="lm_head.3"):
        load_reranker(missing_head, device="cpu")
    not_layer_wise = tmp_path / "not-layer-wise"
    shutil.copytree(local_dir, not_layer_wise)
    config = json.loads((not_layer_wise / "config.json").read_text())
    (not_layer_wise / "config.json").write_text(json.dumps({**config, "layer_wise": False}))
    with pytest.raises(ModelLoadError, match="layer_wise"):
        load_reranker(not_layer_wise, device="cpu")


def test_requested_dtype_is_honoured(local_dir, local, query_passages):
    query, passages = query_passages
    bf16 = load_reranker(local_dir, device="cpu", dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16
    assert bf16.score(query, passages) == pytest.approx(local.score(query, passages), abs=0.5)


# -- slow: against FlagEmbedding, on the checkpoint saved by FlagEmbedding's class ------------------


@pytest.fixture(scope="module")
def lightweight_dir(tmp_path_factory):
    return make_tiny_lightweight_reranker(tmp_path_factory.mktemp("checkpoints") / "flag-lw")


@pytest.fixture(scope="module")
def lightweight(lightweight_dir):
    return load_reranker(lightweight_dir, device="cpu")


@pytest.fixture(scope="module")
def reference(lightweight_dir, parity_pairs):
    """Every reference job in one subprocess (FlagEmbedding takes ~10 s to import)."""
    pairs = [list(pair) for pair in parity_pairs]
    jobs = {name: {"pairs": pairs, **job} for name, job in FLAG_JOBS.items()}
    jobs["softcapping"] = {"pairs": pairs, **SOFTCAP_JOB}
    jobs["inputs"] = {"kind": "inputs", "pairs": pairs, "batch_size": 4}
    jobs["inputs_prompt_64"] = {
        "kind": "inputs",
        "pairs": pairs,
        "prompt": PROMPT,
        "max_length": 64,
    }
    payload = {"checkpoint": str(lightweight_dir), "jobs": list(jobs.values())}
    return dict(zip(jobs, run_reference_script("score_lightweight.py", payload), strict=True))


@slow
@pytest.mark.parametrize("job", FLAG_JOBS)
def test_scores_match_flag_embedding(lightweight, parity_pairs, reference, job):
    ours = _ours(lightweight, parity_pairs, FLAG_JOBS[job])
    expected = reference[job]
    assert torch.tensor(ours).shape == torch.tensor(expected).shape
    assert torch.tensor(ours).sub(torch.tensor(expected)).abs().max().item() < TOLERANCE


@slow
def test_softcapping_option_matches_flag_embedding_on_eager_attention(
    lightweight_dir, lightweight, parity_pairs, reference
):
    capped = load_reranker(lightweight_dir, device="cpu", attn_logit_softcapping=True)
    ours = capped.score_pairs(parity_pairs, cutoff_layers=3)
    assert ours == pytest.approx(reference["softcapping"], abs=TOLERANCE)
    default = lightweight.score_pairs(parity_pairs, cutoff_layers=3)
    assert ours != pytest.approx(default, abs=1e-2)  # and it is not what FlagEmbedding returns


@slow
def test_reference_scores_are_not_degenerate(reference, parity_pairs):
    scores = reference["default"]
    assert max(scores) - min(scores) > 1.0
    assert len({round(score, 3) for score in scores}) >= len(scores) - 2
    long_pairs = [i for i, (q, p) in enumerate(parity_pairs) if len(q) + len(p) > 600]
    truncated = reference["max_length_64"]
    assert any(abs(reference["default"][i] - truncated[i]) > 1e-3 for i in long_pairs)
    assert any(abs(a - b) > 1e-3 for a, b in zip(reference["compress_2"], scores, strict=True))


@slow
@pytest.mark.parametrize(
    ("job", "options"), [("inputs", {}), ("inputs_prompt_64", {"prompt": PROMPT})]
)
def test_inputs_are_flag_embeddings(lightweight, parity_pairs, reference, job, options):
    max_length = 64 if job.endswith("64") else 512
    features = lightweight.tokenize(parity_pairs, max_length, **options)
    ours = sorted(
        [f.inputs.input_ids, f.inputs.query_length, f.inputs.prompt_length] for f in features
    )
    assert ours == sorted(reference[job])


@slow
def test_weights_load_unchanged(lightweight_dir, lightweight):
    saved = load_file(lightweight_dir / "model.safetensors")
    ours = lightweight.model.state_dict()
    assert set(saved) == set(ours)  # no missing or unexpected keys
    for name, tensor in saved.items():
        assert torch.equal(ours[name], tensor), name
    generator = json.loads((lightweight_dir / "generator.json").read_text())
    assert generator["parameters"] == {name: list(t.shape) for name, t in saved.items()}
    assert generator["attn_implementation"] == "sdpa"  # what FlagEmbedding runs, see the docstring


@slow
def test_checkpoint_has_the_published_layout(lightweight_dir):
    config = json.loads((lightweight_dir / "config.json").read_text())
    assert config["architectures"] == ["CostWiseGemmaForCausalLM"]
    assert (config["model_type"], config["auto_map"]) == ("cost_wise_gemma", AUTO_MAP)
    assert (lightweight_dir / "gemma_model.py").is_file()
    assert detect_family(config) == "lightweight"
