"""Loading: family detection and override, local directories, hub ids from an offline cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers import detect_family, known_families, load_reranker
from search_service.rerankers.checkpoint import resolve_checkpoint
from search_service.rerankers.registry import CAUSAL_LM_MODEL_TYPES
from search_service.testing import tiny_layerwise, tiny_lightweight
from search_service.testing.tiny_encoder import install_in_hf_cache, make_tiny_encoder_reranker
from search_service.testing.tiny_llm import make_tiny_llm_reranker

BGE_V2_M3_CONFIG = {
    "architectures": ["XLMRobertaForSequenceClassification"],
    "model_type": "xlm-roberta",
    "id2label": {"0": "LABEL_0"},
    "max_position_embeddings": 8194,
}
REPO_ID = "BAAI/bge-reranker-tiny"
PROBE = ("what is panda?", ["hi", "The giant panda is a bear species endemic to China.", "熊猫"])


def _with_config(source: Path, target: Path, **changes) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_detects_encoder_from_config():
    assert detect_family(BGE_V2_M3_CONFIG) == "encoder"
    remote_code = {
        "auto_map": {"AutoModelForSequenceClassification": "modeling.Custom"},
        "num_labels": 1,
    }
    assert detect_family(remote_code) == "encoder"


@pytest.mark.parametrize(
    "config",
    [
        {**BGE_V2_M3_CONFIG, "id2label": {"0": "NEG", "1": "POS"}},  # a two-label classifier
        {
            "architectures": ["XLMRobertaForSequenceClassification"]
        },  # no labels: transformers says 2
        {"architectures": ["BertModel"], "model_type": "bert"},
        {},
    ],
)
def test_unknown_checkpoints_get_an_error_listing_known_families(config):
    with pytest.raises(ModelLoadError) as raised:
        detect_family(config, "some/model")
    for family in known_families():
        assert family in str(raised.value)
    assert "family=" in str(raised.value)


def test_loads_a_local_directory_by_detection(shared_reranker):
    assert shared_reranker.family == "encoder"


def test_unknown_architecture_fails_then_loads_with_family_override(
    tiny_reranker_dir, tmp_path, shared_reranker
):
    bare = _with_config(tiny_reranker_dir, tmp_path / "bare", architectures=["XLMRobertaModel"])

    with pytest.raises(ModelLoadError, match="encoder"):
        load_reranker(bare, device="cpu")
    reranker = load_reranker(bare, device="cpu", family="encoder")

    assert reranker.score(*PROBE) == pytest.approx(shared_reranker.score(*PROBE), abs=1e-6)


def test_family_by_dotted_path(tiny_reranker_dir):
    reranker = load_reranker(
        tiny_reranker_dir, device="cpu", family="search_service.rerankers.families.encoder.EncoderReranker"
    )
    assert reranker.family == "encoder"


@pytest.mark.parametrize(
    ("family", "message"),
    [
        ("colbert", "known families: encoder"),
        ("search_service.errors.ModelLoadError", "not a subclass"),
        ("search_service.no_such_module.Reranker", "cannot import"),
    ],
)
def test_bad_family_is_a_configuration_error(tiny_reranker_dir, family, message):
    with pytest.raises(ConfigurationError, match=message):
        load_reranker(tiny_reranker_dir, device="cpu", family=family)


def test_missing_or_incomplete_directories(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_reranker(tmp_path / "missing", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_reranker(tmp_path / "empty", device="cpu")


def test_two_label_checkpoint_is_rejected_even_when_forced(tiny_reranker_dir, tmp_path):
    two = _with_config(tiny_reranker_dir, tmp_path / "two", id2label={"0": "NEG", "1": "POS"})
    with pytest.raises(ModelLoadError):
        load_reranker(two, device="cpu", family="encoder")


def test_loads_by_hub_id_from_the_offline_cache(
    tiny_reranker_dir, offline_hf_home, shared_reranker
):
    install_in_hf_cache(tiny_reranker_dir, offline_hf_home, REPO_ID)

    reranker = load_reranker(REPO_ID, device="cpu")

    assert reranker.name == REPO_ID
    assert reranker.score(*PROBE) == pytest.approx(shared_reranker.score(*PROBE), abs=1e-6)


def test_missing_hub_id_offline_is_a_model_load_error(offline_hf_home):
    with pytest.raises(ModelLoadError, match="offline"):
        load_reranker("BAAI/not-in-the-cache", device="cpu")


def test_explicit_cache_dir_and_offline_variable_at_call_time(
    tiny_reranker_dir, tmp_path, monkeypatch, shared_reranker
):
    # No patched constants: the cache is passed explicitly and HF_HUB_OFFLINE is set after import.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    install_in_hf_cache(tiny_reranker_dir, tmp_path / "home", REPO_ID)

    reranker = load_reranker(REPO_ID, device="cpu", cache_dir=tmp_path / "home" / "hub")

    assert reranker.score(*PROBE) == pytest.approx(shared_reranker.score(*PROBE), abs=1e-6)


def test_tiny_checkpoint_is_deterministic(tiny_reranker_dir, tmp_path):
    again = make_tiny_encoder_reranker(tmp_path / "again")
    for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]:
        assert (again / name).read_bytes() == (tiny_reranker_dir / name).read_bytes(), name


# -- the llm family by architectures, model_type or auto_map -----------------------------------


def _detect_from_file(directory: Path, config: dict) -> str:
    """Write `config` as the checkpoint's config.json, then detect as `load_reranker` does."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    checkpoint = resolve_checkpoint(directory)
    return detect_family(checkpoint.config, checkpoint.name_or_path)


@pytest.mark.parametrize(
    "config",
    [
        {"architectures": ["GemmaForCausalLM"], "model_type": "gemma"},
        *({"model_type": model_type} for model_type in ["gemma", "gemma2", "llama", "qwen2"]),
        {"model_type": "mistral", "architectures": ["MistralModel"]},  # a bare model, no head
        {  # remote code: an unknown model type with an AutoModelForCausalLM class
            "model_type": "my_llm",
            "architectures": ["MyLLMForConditionalScoring"],
            "auto_map": {
                "AutoConfig": "configuration_my_llm.MyLLMConfig",
                "AutoModelForCausalLM": "modeling_my_llm.MyLLMForConditionalScoring",
            },
        },
        {"auto_map": {"AutoModelForCausalLM": "someone/my-llm--modeling_my_llm.MyLLM"}},
    ],
    ids=lambda config: "+".join(sorted(config)) + f"-{config.get('model_type')}",
)
def test_llm_family_from_config_json(tmp_path, config):
    assert _detect_from_file(tmp_path / "checkpoint", config) == "llm"


@pytest.mark.parametrize(
    ("config", "family"),
    [
        # The specific causal LMs keep their families, whatever their model_type says.
        ({"model_type": "gemma2", "auto_map": tiny_lightweight.AUTO_MAP}, "lightweight"),
        ({"model_type": "llama", "architectures": ["CostWiseGemmaForCausalLM"]}, "lightweight"),
        ({"model_type": "minicpm", "auto_map": tiny_layerwise.AUTO_MAP}, "layerwise"),
        ({"model_type": "llama", "architectures": ["LayerWiseMiniCPMForCausalLM"]}, "layerwise"),
        # A causal-LM model type with a one-label classification head is a cross-encoder.
        (
            {
                "model_type": "gemma",
                "architectures": ["GemmaForSequenceClassification"],
                "num_labels": 1,
            },
            "encoder",
        ),
    ],
)
def test_specific_families_come_before_the_llm_model_type(tmp_path, config, family):
    assert _detect_from_file(tmp_path / "checkpoint", config) == family


@pytest.mark.parametrize(
    "config",
    [
        # Another head on a causal-LM model type: not an llm reranker (two labels: no encoder).
        {"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]},
        {"model_type": "minicpm"},  # plain MiniCPM is remote code, and not in the list
        {"model_type": "bert"},
        {"model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"]},
        {"auto_map": {"AutoModel": "modeling_my_llm.MyLLMModel"}},
    ],
)
def test_other_model_types_are_not_the_llm_family(tmp_path, config):
    with pytest.raises(ModelLoadError, match="cannot tell which reranker family"):
        _detect_from_file(tmp_path / "checkpoint", config)


def test_listed_model_types_are_causal_lms_transformers_loads():
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    assert CAUSAL_LM_MODEL_TYPES <= set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def test_llm_checkpoint_without_architectures_loads_by_model_type(tmp_path):
    source = make_tiny_llm_reranker(tmp_path / "gemma-tiny")
    config = json.loads((source / "config.json").read_text())
    del config["architectures"]
    target = tmp_path / "no-architectures"
    shutil.copytree(source, target)
    (target / "config.json").write_text(json.dumps(config))

    reranker = load_reranker(target, device="cpu")

    assert reranker.family == "llm" and type(reranker.model).__name__ == "GemmaForCausalLM"
    expected = load_reranker(source, device="cpu").score(*PROBE)
    assert reranker.score(*PROBE) == pytest.approx(expected, abs=1e-6)


def test_every_runtime_setting_names_a_registered_runtime():
    from search_service.rerankers import known_runtimes
    from search_service.settings import RERANKER_RUNTIMES

    # `remote` is chosen per RAG_RERANKERS entry, never by RAG_RERANKER_RUNTIME
    assert known_runtimes() == [*RERANKER_RUNTIMES, "remote"]
