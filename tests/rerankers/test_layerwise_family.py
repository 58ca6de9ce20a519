"""The layerwise family (bge-reranker-v2-minicpm-layerwise) on our own model code.

References, all computed in the FlagEmbedding reference env (transformers 4.46) from a tiny
checkpoint saved by FlagEmbedding's own class: `LayerWiseFlagLLMReranker.compute_score`, the
model card's raw-transformers snippet (remote code, trust_remote_code), and the 4.46 tokenizer.
Those tests are `slow`; the fast ones use the same tiny checkpoint saved by our class
(`make_local_layerwise_reranker`).
"""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
from safetensors.torch import load_file

from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers import detect_family, load_reranker
from search_service.rerankers.families.minicpm_layerwise import (
    LayerwiseMiniCPMConfig,
    LayerwiseMiniCPMForScoring,
)
from search_service.testing.tiny_layerwise import (
    TINY_CONFIG,
    write_tokenizer,
)
from tests.reference.checkpoints import make_tiny_layerwise_reranker
from tests.reference.env import run_reference_script

TOLERANCE = 1e-4
LAST = TINY_CONFIG["num_hidden_layers"]  # 4: heads for layers 1..4
PROMPT = "Does the passage answer the question? Answer Yes or No."
PUBLISHED_CONFIG = {  # the fields detection reads, as bge-reranker-v2-minicpm-layerwise has them
    "architectures": ["LayerWiseMiniCPMForCausalLM"],
    "auto_map": {
        "AutoConfig": "configuration_minicpm_reranker.LayerWiseMiniCPMConfig",
        "AutoModel": "modeling_minicpm_reranker.LayerWiseMiniCPMModel",
        "AutoModelForCausalLM": "modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM",
    },
    "model_type": "minicpm",
    "start_layer": 8,
    "head_type": "simple",
    "head_multi": True,
}
FLAG_JOBS = {
    "default": {},  # no cutoff_layers: FlagEmbedding scores the last layer
    "normalize": {"normalize": True},
    "layer_2": {"cutoff_layers": [2]},
    "layer_1_normalize": {"cutoff_layers": [1], "normalize": True},
    "max_length_64": {"max_length": 64, "cutoff_layers": [3]},
    "prompt": {"prompt": PROMPT, "cutoff_layers": [2]},
    "prompt_max_length_32": {"prompt": PROMPT, "max_length": 32},
    "batch_size_3": {"batch_size": 3, "cutoff_layers": [2]},
    "layers_1_3_4": {"cutoff_layers": [1, 3, 4]},
    "unsorted_3_1": {"cutoff_layers": [3, 1]},
}
TEXTS = [
    "A: what is panda?",
    "B: 大熊猫主要吃竹子。",
    "\n",
    "  two  spaces\n\ttab",
    "ÆØÅ 😀 <s> </s>",
    "",
]

slow = pytest.mark.slow


def _ours(job: dict) -> dict:
    """FlagEmbedding compute_score kwargs -> ours (cutoff_layers absent: the last layer)."""
    options = dict(job)
    layers = options.pop("cutoff_layers", [LAST])
    return {"cutoff_layers": layers, **options}


@pytest.fixture(scope="session")
def layerwise_dir(tmp_path_factory):
    return make_tiny_layerwise_reranker(tmp_path_factory.mktemp("checkpoints") / "layerwise")


@pytest.fixture(scope="session")
def layerwise(layerwise_dir):
    return load_reranker(layerwise_dir, device="cpu")


@pytest.fixture(scope="session")
def short_pairs(layerwise, parity_pairs):
    """Pairs that no construction truncates at max_length 1024 (where the snippet agrees)."""
    features = layerwise.tokenize(parity_pairs, 10_000)
    return [
        pair for pair, feature in zip(parity_pairs, features, strict=True) if len(feature) < 700
    ]


@pytest.fixture(scope="session")
def reference(layerwise_dir, parity_pairs, short_pairs):
    """Every reference job in one subprocess (FlagEmbedding takes ~10 s to import)."""
    as_lists = lambda pairs: [list(pair) for pair in pairs]
    jobs = {
        f"flag_{name}": {"kind": "flag", "pairs": as_lists(parity_pairs), **job}
        for name, job in FLAG_JOBS.items()
    }
    for length in (512, 64):
        jobs[f"inputs_{length}"] = {
            "kind": "inputs",
            "pairs": as_lists(parity_pairs),
            "max_length": length,
            "batch_size": 4,
        }
    jobs["inputs_prompt"] = {"kind": "inputs", "pairs": as_lists(parity_pairs), "prompt": PROMPT}
    jobs["snippet"] = {"kind": "snippet", "pairs": as_lists(short_pairs), "cutoff_layers": [2, 4]}
    jobs["tokenize"] = {"kind": "tokenize", "texts": TEXTS}
    payload = {"checkpoint": str(layerwise_dir), "jobs": list(jobs.values())}
    return dict(zip(jobs, run_reference_script("score_layerwise.py", payload), strict=True))


# -- detection and config: no model needed --------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        PUBLISHED_CONFIG,
        {"architectures": ["LayerWiseMiniCPMForCausalLM"]},
        {"auto_map": PUBLISHED_CONFIG["auto_map"]},
        {"model_type": "minicpm", "start_layer": 8},
    ],
)
def test_detects_layerwise(config):
    assert detect_family(config) == "layerwise"


def test_plain_minicpm_is_not_layerwise():
    plain = {"architectures": ["MiniCPMForCausalLM"], "model_type": "minicpm"}
    try:
        assert detect_family(plain) != "layerwise"
    except ModelLoadError:
        pass  # no generic llm family registered


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"head_type": "raw"}, "head_type"),
        ({"head_type": "complex"}, "head_type"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
    ],
)
def test_unsupported_configs_are_refused(change, message):
    with pytest.raises(ModelLoadError, match=message):
        LayerwiseMiniCPMConfig.from_checkpoint({**TINY_CONFIG, "vocab_size": 10, **change})


def test_config_reads_the_published_layout():
    config = LayerwiseMiniCPMConfig.from_checkpoint(
        {**PUBLISHED_CONFIG, **TINY_CONFIG, "vocab_size": 10, "rope_scaling": None}
    )
    assert config.rope_parameters["rope_theta"] == TINY_CONFIG["rope_theta"]
    assert (config.scale_emb, config.scale_depth, config.start_layer) == (12, 1.4, 1)
    assert LayerwiseMiniCPMForScoring(config).scoring_layers == range(1, LAST + 1)


def test_tiny_tokenizer_is_deterministic(tmp_path):
    write_tokenizer(tmp_path / "a")
    write_tokenizer(tmp_path / "b")
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# -- fast: the reranker on the checkpoint saved by our class ---------------------------------------


@pytest.fixture(scope="module")
def local_dir(layerwise_local_dir):
    return layerwise_local_dir


@pytest.fixture(scope="module")
def local(layerwise_local):
    return layerwise_local


def test_local_checkpoint_has_the_published_layout(local_dir, local):
    config = json.loads((local_dir / "config.json").read_text())
    assert detect_family(config) == "layerwise"
    assert config["architectures"] == ["LayerWiseMiniCPMForCausalLM"]
    assert (config["model_type"], config["rope_theta"]) == ("minicpm", TINY_CONFIG["rope_theta"])
    assert local.family == "layerwise" and local.layers == range(1, LAST + 1)


def test_several_layers_from_one_pass_equal_each_scored_alone(local, parity_pairs):
    # One layer per call is in the contract test; here two from one pass, each against every
    # pair scored alone, in the caller's order.
    options = {"max_length": 64}
    expected_layers = [
        local.score_pairs_layers([pair], [1, LAST], **options) for pair in parity_pairs
    ]
    expected_1 = [scores[1][0] for scores in expected_layers]
    expected_last = [scores[LAST][0] for scores in expected_layers]
    for column in (expected_1, expected_last):  # a swap of two pairs would show
        assert min(abs(a - b) for a, b in itertools.combinations(column, 2)) > 1e-3
    for batch_size in (1, 2, 5, len(parity_pairs)):
        layers = local.score_pairs_layers(parity_pairs, [LAST, 1], batch_size=batch_size, **options)
        assert layers[1] == pytest.approx(expected_1, abs=TOLERANCE), batch_size
        assert layers[LAST] == pytest.approx(expected_last, abs=TOLERANCE), batch_size
    assert local.score_layers("q", [], cutoff_layers=[2, 1]) == {2: [], 1: []}


# -- parity with FlagEmbedding ---------------------------------------------------------------------


@slow
@pytest.mark.parametrize("job", [name for name in FLAG_JOBS if name != "unsorted_3_1"])
def test_scores_match_flag_embedding(layerwise, parity_pairs, reference, job):
    options = _ours(FLAG_JOBS[job])
    expected = reference[f"flag_{job}"]
    if len(options["cutoff_layers"]) == 1:
        assert layerwise.score_pairs(parity_pairs, **options) == pytest.approx(
            expected, abs=TOLERANCE
        )
        return
    # Several layers: FlagEmbedding returns one list per layer, in the order asked for.
    layers = options.pop("cutoff_layers")
    ours = layerwise.score_pairs_layers(parity_pairs, layers, **options)
    assert list(ours) == layers
    for index, layer in enumerate(layers):
        assert ours[layer] == pytest.approx(expected[index], abs=TOLERANCE), layer


@slow
def test_reference_scores_are_not_degenerate(reference, parity_pairs):
    scores = reference["flag_default"]
    assert max(scores) - min(scores) > 1.0
    assert len({round(score, 3) for score in scores}) >= len(scores) - 2
    layers = reference["flag_layers_1_3_4"]
    assert all(abs(a - b) > 1e-3 for a, b in zip(layers[0], layers[2], strict=True))
    long_pairs = [i for i, (q, p) in enumerate(parity_pairs) if len(q) + len(p) > 600]
    assert any(
        abs(reference["flag_default"][i] - reference["flag_prompt_max_length_32"][i]) > 1e-3
        for i in long_pairs
    )


@slow
@pytest.mark.parametrize(
    ("job", "options"),
    [("inputs_512", {}), ("inputs_64", {"max_length": 64}), ("inputs_prompt", {"prompt": PROMPT})],
)
def test_inputs_are_flag_embeddings(layerwise, parity_pairs, reference, job, options):
    length = options.pop("max_length", 512)
    ours = [f.input_ids for f in layerwise.tokenize(parity_pairs, length, **options)]
    assert sorted(ours) == sorted(reference[job]["rows"])
    assert all(width % 8 == 0 for width in reference[job]["widths"])


@slow
def test_snippet_agrees_on_untruncated_pairs(layerwise, short_pairs, reference):
    assert len(short_pairs) >= 8
    for index, layer in enumerate([2, 4]):
        ours = layerwise.score_pairs(short_pairs, cutoff_layers=layer, max_length=1024)
        assert ours == pytest.approx(reference["snippet"][index], abs=TOLERANCE)


@slow
def test_tokenizer_is_the_same_under_transformers_4_and_5(layerwise, layerwise_dir, reference):
    from transformers import LlamaTokenizer

    tokens = reference["tokenize"]
    assert (tokens["tokenizer_class"], tokens["padding_side"]) == ("LlamaTokenizerFast", "left")
    rebuilt = LlamaTokenizer.from_pretrained(layerwise_dir)  # what AutoTokenizer builds in v5
    for tokenizer in (layerwise.tokenizer, rebuilt):
        assert [tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS] == tokens["ids"]
        assert [tokenizer(t)["input_ids"] for t in TEXTS] == tokens["ids_special"]


# -- the model code --------------------------------------------------------------------------------


@slow
def test_weights_load_unchanged(layerwise_dir, layerwise):
    config = LayerwiseMiniCPMConfig.from_checkpoint(layerwise.model.config.to_dict())
    _, info = LayerwiseMiniCPMForScoring.from_pretrained(
        layerwise_dir, config=config, output_loading_info=True
    )
    assert not any(info.values()), info
    saved = load_file(layerwise_dir / "model.safetensors")
    ours = layerwise.model.state_dict()
    assert set(saved) == set(ours)
    for name, tensor in saved.items():
        assert torch.equal(ours[name], tensor), name


@slow
def test_unsorted_layers_get_their_own_heads(layerwise, parity_pairs, reference):
    query = parity_pairs[0][0]
    passages = [p for q, p in parity_pairs if q == query]
    unsorted = layerwise.score_layers(query, passages, cutoff_layers=[3, 1, 4, 3])
    ordered = layerwise.score_layers(query, passages, cutoff_layers=[1, 3, 4])
    assert list(unsorted) == [3, 1, 4]
    for layer in (1, 3, 4):
        assert unsorted[layer] == pytest.approx(ordered[layer], abs=1e-6)
        assert unsorted[layer] == pytest.approx(
            layerwise.score(query, passages, cutoff_layers=layer), abs=1e-5
        )
    # FlagEmbedding applies the heads in the caller's order to hidden states in layer order.
    flag_unsorted, flag_sorted = reference["flag_unsorted_3_1"], reference["flag_layers_1_3_4"]
    assert flag_unsorted[0] != pytest.approx(flag_sorted[1], abs=1e-2)  # not layer 3's scores


@slow
def test_layers_above_the_cutoff_are_not_run(monkeypatch, layerwise):
    reranker = copy.deepcopy(layerwise)

    def boom(*args, **kwargs):
        raise AssertionError("layer 2 ran")

    monkeypatch.setattr(reranker.model.model.layers[2], "forward", boom)
    assert len(reranker.score("q", ["a", "b"], cutoff_layers=2)) == 2
    with pytest.raises(AssertionError, match="layer 2 ran"):
        reranker.score("q", ["a"], cutoff_layers=3)


@slow
@pytest.mark.parametrize("layers", [0, 5, [1, 2], [], [True], "4"])
def test_score_takes_one_valid_layer(layerwise, layers):
    with pytest.raises(ConfigurationError):
        layerwise.score("q", ["a"], cutoff_layers=layers)


@slow
def test_defaults_and_empty_input(layerwise, layerwise_dir):
    assert layerwise.family == "layerwise"
    assert {"cutoff_layers", "prompt"} <= set(layerwise.options)
    assert layerwise.cutoff_layer == LAST and layerwise.layers == range(1, LAST + 1)
    assert layerwise.max_supported_length == TINY_CONFIG["max_position_embeddings"]
    assert layerwise.score("q", []) == []
    assert layerwise.score_layers("q", [], cutoff_layers=[2, 1]) == {2: [], 1: []}
    at_two = load_reranker(layerwise_dir, device="cpu", cutoff_layers=[2])
    assert at_two.score("q", ["a", "b"]) == layerwise.score("q", ["a", "b"], cutoff_layers=2)


@slow
def test_requested_dtype_is_honoured(layerwise_dir, layerwise):
    half = load_reranker(layerwise_dir, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    passages = ["hi", "The giant panda is a bear species endemic to China."]
    assert half.score("what is panda?", passages) == pytest.approx(
        layerwise.score("what is panda?", passages), abs=0.5
    )


@slow
def test_runtime_errors_propagate_and_oom_backs_off(monkeypatch, layerwise):
    reranker = copy.deepcopy(layerwise)
    passages = [f"passage {i}: " + "bamboo " * i for i in range(6)]
    expected = reranker.score("q", passages, batch_size=4)
    original, calls = reranker.forward, []

    def forward(batch):
        calls.append(batch["input_ids"].shape[0])
        if len(calls) == 1:
            raise torch.OutOfMemoryError("injected")
        return original(batch)

    monkeypatch.setattr(reranker, "forward", forward)
    assert reranker.score("q", passages, batch_size=4) == pytest.approx(expected, abs=1e-5)
    assert calls == [4, 2, 2, 2]

    monkeypatch.setattr(reranker, "forward", lambda batch: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError, match="x"):
        reranker.score("q", passages)
