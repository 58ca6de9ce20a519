"""RAG_RERANKERS: several rerankers by name, and how RAG_RERANKER_MODEL picks the default."""

import json
import shutil

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
    # loaded from a path: named by its display name (never a path in a response), loaded from it
    assert names_and_default(explicit)[1] == "m3"
    assert names_and_default(explicit)[0][0][:2] == ("m3", "/m/m3")
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


# -- an entry's own family: `name=path_or_id#family=<family>` --------------------------------


def test_an_entry_forces_its_family_with_a_suffix():
    settings = Settings.from_env(
        {
            "RAG_RERANKERS": "m3=BAAI/bge-reranker-v2-m3, gemma=/m/gemma=v2#family=llm ,"
            "mine=/m/mine #family= my_pkg.rerankers.MyReranker",
        }
    )
    assert names_and_default(settings) == (
        [
            ("m3", "BAAI/bge-reranker-v2-m3", None),
            ("gemma", "/m/gemma=v2", "llm"),
            ("mine", "/m/mine", "my_pkg.rerankers.MyReranker"),
        ],
        "m3",
    )


def test_the_default_entry_family_and_reranker_family():
    def specs(rerankers, family=None):
        env = {"RAG_RERANKERS": rerankers, "RAG_RERANKER_MODEL": "a"}
        if family is not None:
            env["RAG_RERANKER_FAMILY"] = family
        return names_and_default(Settings.from_env(env))[0]

    assert specs("a=/m/a#family=llm,b=/m/b#family=encoder")[:2] == [
        ("a", "/m/a", "llm"),
        ("b", "/m/b", "encoder"),
    ]
    assert specs("a=/m/a,b=/m/b#family=encoder", "llm")[0] == ("a", "/m/a", "llm")
    assert specs("a=/m/a#family=llm,b=/m/b", "llm")[0] == ("a", "/m/a", "llm")
    with pytest.raises(ConfigurationError, match="#family=llm contradicts RAG_RERANKER_FAMILY"):
        specs("a=/m/a#family=llm", "encoder")


@pytest.mark.parametrize("raw", ["a=#family=llm", "a=/m/a#family=", "a=/m/a#family=  "])
def test_an_empty_path_or_family_is_refused(raw):
    settings = Settings.from_env({"RAG_RERANKERS": raw})
    with pytest.raises(ConfigurationError, match=r"RAG_RERANKERS \(a=...\): expected path_or_id"):
        reranker_specs(settings)


def test_cli_model_takes_the_suffix_too():
    spec = pick_reranker_spec(Settings(reranker_model=None), "/m/gemma#family=llm")
    # named by its display name (the output never shows a path)
    assert (spec.name, spec.source, spec.family) == ("gemma", "/m/gemma", "llm")
    spec = pick_reranker_spec(Settings(reranker_model=None), "/m/gemma#family=llm", "encoder")
    assert spec.family == "encoder"  # --family wins


def test_a_forced_family_loads_an_undetectable_entry(tiny_reranker_dir, tmp_path):
    """A checkpoint whose config names no reranker head loads only when its entry forces a family;
    errors name the entry."""
    bare = tmp_path / "bare"
    shutil.copytree(tiny_reranker_dir, bare)
    config = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({**config, "architectures": ["XLMRobertaModel"]}))

    def load(entry):
        rerankers = f"enc={tiny_reranker_dir},{entry}"
        return load_rerankers(
            Settings(rerankers=_parse(rerankers), reranker_model="enc", device="cpu")
        )

    with pytest.raises(ModelLoadError, match=r"RAG_RERANKERS \(bare=...\): cannot tell"):
        load(f"bare={bare}")
    with pytest.raises(ConfigurationError, match=r"RAG_RERANKERS \(bare=...\): unknown reranker"):
        load(f"bare={bare}#family=colbert")
    rerankers = load(f"bare={bare}#family=encoder")
    query, passages = "what is panda?", ["hi", "The giant panda is a bear species.", "熊猫"]
    enc, forced = rerankers.pick("enc"), rerankers.pick("bare")
    assert forced is not enc and forced.family == "encoder"
    assert forced.score(query, passages) == pytest.approx(enc.score(query, passages), abs=1e-6)


def _parse(raw):
    return Settings.from_env({"RAG_RERANKERS": raw}).rerankers
