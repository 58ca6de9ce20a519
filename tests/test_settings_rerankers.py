"""RAG_RERANKERS: several rerankers by name, and how RAG_RERANKER_MODEL picks the default."""

import pytest

from search_service.errors import ConfigurationError, ModelLoadError
from search_service.services import (
    load_rerankers,
    pick_reranker_spec,
    reranker_specs,
)
from search_service.settings import Settings


def names_and_default(settings):
    specs, default = reranker_specs(settings)
    return [(spec.name, spec.source, spec.family) for spec in specs], default


def test_rerankers_are_parsed_in_order():
    settings = Settings.from_env(
        {
            "RAG_RERANKERS": " m3 = BAAI/bge-reranker-v2-m3 , gemma=/models/gemma=v2,",
            "RAG_RERANKER_MODEL": "m3",
        }
    )
    assert settings.rerankers == (("m3", "BAAI/bge-reranker-v2-m3"), ("gemma", "/models/gemma=v2"))
    assert names_and_default(settings) == (
        [("m3", "BAAI/bge-reranker-v2-m3", None), ("gemma", "/models/gemma=v2", None)],
        "m3",
    )


def test_only_named_rerankers_make_the_first_the_default():
    settings = Settings.from_env(
        {"RAG_RERANKERS": "a=/m/a,b=/m/b", "RAG_RERANKER_FAMILY": "encoder"}
    )
    assert settings.reranker_model is None  # bge-reranker-v2-m3 is not loaded on top
    assert names_and_default(settings) == ([("a", "/m/a", "encoder"), ("b", "/m/b", None)], "a")


def test_reranker_model_by_id_is_added_first_and_is_the_default():
    settings = Settings.from_env(
        {"RAG_RERANKERS": "gemma=/m/gemma"}, reranker_model="BAAI/bge-reranker-v2-m3"
    )
    assert names_and_default(settings) == (
        [("BAAI/bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3", None), ("gemma", "/m/gemma", None)],
        "BAAI/bge-reranker-v2-m3",
    )
    explicit = Settings.from_env({"RAG_RERANKERS": "gemma=/m/gemma", "RAG_RERANKER_MODEL": "/m/m3"})
    assert names_and_default(explicit)[1] == "/m/m3"
    assert names_and_default(Settings.from_env({"RAG_RERANKER_MODEL": "none"})) == ([], None)


def test_pick_reranker_spec_for_the_cli():
    settings = Settings(rerankers=(("a", "/m/a"),), reranker_model=None)
    assert pick_reranker_spec(settings).source == "/m/a"
    assert pick_reranker_spec(settings, "a", "llm").family == "llm"
    assert pick_reranker_spec(settings, "/m/other").source == "/m/other"
    assert pick_reranker_spec(Settings(reranker_model=None)) is None


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("a", "name=path_or_id entries"),
        ("=/m/a", "name=path_or_id entries"),
        ("a=", "name=path_or_id entries"),
        ("a=/m/a,a=/m/b", "names 'a' twice"),
        ("bad name=/m/a", "invalid reranker name"),
    ],
)
def test_bad_rerankers_are_refused(raw, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Settings.from_env({"RAG_RERANKERS": raw})


def test_one_checkpoint_under_two_names_loads_once(tiny_reranker_dir):
    path = str(tiny_reranker_dir)
    rerankers = load_rerankers(
        Settings(rerankers=(("a", path), ("b", path)), reranker_model="b", device="cpu")
    )
    assert rerankers.default == "b"
    assert rerankers.pick("a") is rerankers.pick("b") is rerankers.pick(None)


def test_an_unloadable_entry_names_the_setting(tmp_path):
    settings = Settings(
        rerankers=(("gone", str(tmp_path / "missing")),), reranker_model=None, device="cpu"
    )
    with pytest.raises(ModelLoadError, match=r"RAG_RERANKERS \(gone=...\)"):
        load_rerankers(settings)
