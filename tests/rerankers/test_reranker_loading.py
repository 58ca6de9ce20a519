"""Loading: family detection and override, local directories, hub ids from an offline cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers import detect_family, known_families, load_reranker
from tests.support.tiny_models import install_in_hf_cache, make_tiny_encoder_reranker

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


@pytest.fixture
def offline_hf_home(tmp_path, monkeypatch) -> Path:
    """A temporary HF_HOME in offline mode.

    huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once, when it is imported, into
    `huggingface_hub.constants` (transformers reads them from there at call time), so setting the
    variables is not enough in this process: the constants are patched too. The variables are set
    for any subprocess.
    """
    from huggingface_hub import constants

    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hf_home


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
        tiny_reranker_dir, device="cpu", family="search_service.rerankers.encoder.EncoderReranker"
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
