"""The `llm` family (FlagLLMReranker: bge-reranker-v2-gemma) on a tiny generated GemmaForCausalLM.

The `slow` tests compare with FlagEmbedding 1.4.2 and the model card's raw-transformers snippet in
the transformers 4.46 reference env (tests/reference/score_flag_llm.py), all in one subprocess.
"""

from __future__ import annotations

import hashlib

import pytest

from search_service.errors import ModelLoadError
from search_service.rerankers import detect_family
from search_service.rerankers.families.decoder_inputs import (
    DEFAULT_PROMPT,
    DecoderInputBuilder,
    last_token_positions,
    pad_batch,
    truncate_only_second,
)
from search_service.rerankers.families.llm import LLMReranker
from search_service.testing.tiny_llm import make_tiny_llm_reranker
from tests.reference.env import run_reference_script

TOLERANCE = 1e-4
CUSTOM_PROMPT = "Does passage B answer query A? Reply Yes or No."
LONG_PROMPT = DEFAULT_PROMPT + " " + DEFAULT_PROMPT


# -- detection and loading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "architecture",
    ["GemmaForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "Gemma2ForCausalLM"],
)
def test_causal_lms_are_the_llm_family(architecture):
    assert detect_family({"architectures": [architecture]}) == "llm"


@pytest.mark.parametrize(
    "config",
    [
        {"architectures": ["LayerWiseMiniCPMForCausalLM"], "model_type": "minicpm"},
        {"architectures": ["CostWiseGemmaForCausalLM"], "model_type": "cost_wise_gemma"},
        {"architectures": ["XLMRobertaForSequenceClassification"], "num_labels": 1},
        {"architectures": ["BertModel"]},
    ],
)
def test_other_architectures_are_not_the_llm_family(config):
    try:
        family = detect_family(config)
    except ModelLoadError:
        return
    assert family != "llm"


def test_tiny_checkpoint_loads_as_llm(llm, llm_dir):
    assert isinstance(llm, LLMReranker) and llm.family == "llm"
    assert type(llm.model).__name__ == "GemmaForCausalLM"
    assert llm.tokenizer.convert_ids_to_tokens(llm.yes_id) == "Yes"
    assert llm.tokenizer.padding_side == "left"


def test_generator_is_deterministic(llm_dir, tmp_path):
    again = make_tiny_llm_reranker(tmp_path / "again")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors"):
        digest = [hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (llm_dir, again)]
        assert digest[0] == digest[1], name


# -- input construction (decoder_inputs) --------------------------------------------------------


def test_truncate_only_second_matches_prepare_for_model_rules():
    assert truncate_only_second([1, 2], [3, 4, 5], 10) == [3, 4, 5]
    assert truncate_only_second([1, 2], [3, 4, 5, 6], 4) == [3, 4]
    assert truncate_only_second([1, 2], [3, 4, 5, 6], 4, "left") == [5, 6]
    # The second sequence cannot absorb the excess: nothing is cut (transformers 4.46 logs).
    assert truncate_only_second([1, 2, 3, 4], [5, 6], 3) == [5, 6]
    assert truncate_only_second([1, 2, 3], [5, 6], 3) == [5, 6]


def test_pad_batch_pads_to_a_multiple_of_8_on_either_side():
    left = pad_batch([[5, 6, 7], [8]], pad_id=0, padding_side="left")
    assert left["input_ids"].shape == (2, 8)
    assert left["input_ids"][1].tolist() == [0] * 7 + [8]
    assert last_token_positions(left["attention_mask"]).tolist() == [7, 7]
    right = pad_batch([[5, 6, 7], [8]] * 1, pad_id=0, padding_side="right")
    assert right["input_ids"][0].tolist() == [5, 6, 7] + [0] * 5
    assert last_token_positions(right["attention_mask"]).tolist() == [2, 0]
    assert pad_batch([list(range(9))], 0)["input_ids"].shape == (1, 16)


def test_inputs_have_flag_layout(llm):
    builder: DecoderInputBuilder = llm.inputs
    feature = builder.build([("what is panda?", "hi")], 512)[0]
    tokenizer = llm.tokenizer
    expected = (
        [tokenizer.bos_token_id]
        + tokenizer("A: what is panda?", add_special_tokens=False)["input_ids"]
        + tokenizer("\nB: hi\n" + DEFAULT_PROMPT, add_special_tokens=False)["input_ids"]
    )
    assert feature.input_ids == expected
    assert feature.prompt_length == len(builder.sep_ids) + len(builder.prompt_ids())


def test_truncation_budget_grows_with_the_prompt(llm, parity_pairs):
    # FlagEmbedding's budget is max_length + len(sep) + len(prompt): a longer prompt keeps more.
    pair = max(parity_pairs, key=lambda pair: min(len(pair[0]), len(pair[1])))
    builder = llm.inputs
    short = builder.build([pair], 64)[0]
    long = builder.build([pair], 64, prompt=LONG_PROMPT)[0]
    kept_short = len(short) - short.prompt_length
    kept_long = len(long) - long.prompt_length
    assert kept_short == 64 + len(builder.sep_ids) + len(builder.prompt_ids())
    assert kept_long > kept_short


# -- scoring ------------------------------------------------------------------------------------


def test_options_change_scores_and_unknown_options_fail(llm, parity_pairs):
    default = llm.score_pairs(parity_pairs[:4])
    assert llm.score_pairs(parity_pairs[:4], prompt=CUSTOM_PROMPT) != pytest.approx(default)
    assert llm.score("q", []) == []
    with pytest.raises(TypeError):
        llm.score_pairs(parity_pairs[:1], cutoff_layers=[1])


# -- references (transformers 4.46 env) --------------------------------------------------------

FLAG_JOBS = {
    "default": {},
    "normalize": {"normalize": True},
    "max_length_64": {"max_length": 64},
    "max_length_64_normalize": {"max_length": 64, "normalize": True},
    "prompt": {"prompt": CUSTOM_PROMPT},
    "prompt_max_length_48": {"prompt": LONG_PROMPT, "max_length": 48},
    "query_max_length_200": {"max_length": 32, "query_max_length": 200},
    "batch_size_3": {"batch_size": 3},
}


def _fits(llm, query, passage, max_length):
    builder = llm.inputs
    first = 1 + len(builder.encode("A: " + query))
    return first <= max_length * 3 // 4 and first + 1 + len(builder.encode("B: " + passage)) <= (
        max_length
    )


@pytest.fixture(scope="module")
def reference(llm, llm_dir, parity_pairs) -> dict[str, object]:
    as_lists = lambda pairs: [list(pair) for pair in pairs]
    fitting = [pair for pair in parity_pairs if _fits(llm, *pair, 1024)]
    jobs = {f"flag_{name}": {"kind": "flag", **opts} for name, opts in FLAG_JOBS.items()}
    jobs["snippet"] = {"kind": "snippet", "max_length": 1024, "pairs_": fitting}
    jobs["snippet_prompt"] = {"kind": "snippet", "prompt": CUSTOM_PROMPT, "pairs_": fitting}
    jobs["snippet_all"] = {"kind": "snippet", "max_length": 64}
    jobs["tokens_512"] = {"kind": "tokenize", "max_length": 512}
    jobs["tokens_64_prompt"] = {"kind": "tokenize", "max_length": 64, "prompt": LONG_PROMPT}
    for job in jobs.values():
        job["pairs"] = as_lists(job.pop("pairs_", parity_pairs))
    payload = {"checkpoint": str(llm_dir), "jobs": list(jobs.values())}
    results = run_reference_script("score_flag_llm.py", payload)
    return {"fitting": fitting, **dict(zip(jobs, results, strict=True))}  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("job", FLAG_JOBS)
def test_scores_match_flag_llm_reranker(llm, parity_pairs, reference, job):
    options = {k: v for k, v in FLAG_JOBS[job].items()}
    assert llm.score_pairs(parity_pairs, **options) == pytest.approx(
        reference[f"flag_{job}"], abs=TOLERANCE
    )


@pytest.mark.slow
def test_reference_scores_are_not_degenerate(reference, parity_pairs):
    scores = reference["flag_default"]
    assert max(scores) - min(scores) > 0.5
    assert len({round(score, 3) for score in scores}) >= len(scores) - 2
    long_pairs = [i for i, (q, p) in enumerate(parity_pairs) if len(q) + len(p) > 600]
    assert any(
        abs(reference["flag_default"][i] - reference["flag_max_length_64"][i]) > 1e-3
        for i in long_pairs
    )


@pytest.mark.slow
def test_model_card_snippet_agrees(llm, reference):
    fitting = reference["fitting"]
    assert len(fitting) >= 8
    assert llm.score_pairs(fitting, max_length=1024) == pytest.approx(
        reference["snippet"], abs=TOLERANCE
    )
    assert llm.score_pairs(fitting, max_length=1024, prompt=CUSTOM_PROMPT) == pytest.approx(
        reference["snippet_prompt"], abs=TOLERANCE
    )


@pytest.mark.slow
def test_snippet_budget_differs_from_flag_embedding(llm, parity_pairs, reference):
    # The snippet truncates to max_length; FlagEmbedding to max_length + len(sep) + len(prompt).
    ours = llm.score_pairs(parity_pairs, max_length=64)
    differs = [abs(a - b) > TOLERANCE for a, b in zip(ours, reference["snippet_all"], strict=True)]
    fits = [_fits(llm, *pair, 64) for pair in parity_pairs]
    assert any(differs)
    assert not any(d and f for d, f in zip(differs, fits, strict=True))


@pytest.mark.slow
def test_tokenizer_is_the_same_under_transformers_4_and_5(llm, parity_pairs, reference):
    tokens = reference["tokens_512"]
    tokenizer = llm.tokenizer
    assert tokens["tokenizer_class"] == "GemmaTokenizerFast"
    assert tokens["padding_side"] == tokenizer.padding_side == "left"
    assert tokens["yes_ids"] == tokenizer("Yes", add_special_tokens=False)["input_ids"]
    texts = [text for pair in parity_pairs for text in pair]
    assert tokenizer(texts)["input_ids"] == tokens["plain_ids"]
    queries = [f"A: {q}" for q, _ in parity_pairs]
    passages = [f"B: {p}" for _, p in parity_pairs]
    assert tokenizer(queries, add_special_tokens=False)["input_ids"] == tokens["query_ids"]
    assert tokenizer(passages, add_special_tokens=False)["input_ids"] == tokens["passage_ids"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("job", "max_length", "prompt"),
    [("tokens_512", 512, None), ("tokens_64_prompt", 64, LONG_PROMPT)],
)
def test_inputs_match_prepare_for_model(llm, parity_pairs, reference, job, max_length, prompt):
    ours = [f.input_ids for f in llm.tokenize(parity_pairs, max_length, prompt=prompt)]
    assert ours == reference[job]["flag_ids"]
