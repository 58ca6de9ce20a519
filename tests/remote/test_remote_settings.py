"""RAG_RERANKERS' JSON form (remote and local entries), the comma form beside it, and the
RAG_EMBEDDER_URL settings: parsed once, errors that name the entry."""

from __future__ import annotations

import json

import pytest

from search_service.errors import ConfigurationError
from search_service.remote.config import RemoteConfig
from search_service.services import reranker_specs
from search_service.settings import Settings


def parse(value) -> Settings:
    return Settings.from_env({"RAG_RERANKERS": value if isinstance(value, str) else json.dumps(value)})


def test_json_list_with_a_remote_and_a_local_entry():
    settings = parse([
        {"name": "gpu", "remote": {"protocol": "TEI", "url": "http://tei:8080", "model": "BAAI/bge-reranker-v2-m3",
                                   "timeout_s": 5, "extra": {"b": 1, "a": 2}}},
        {"name": "local", "model": "BAAI/bge-reranker-base"},
        {"name": "gemma", "model": "/models/gemma", "family": "llm"},
    ])
    (gpu, remote), local, gemma = settings.rerankers
    assert gpu == "gpu" and isinstance(remote, RemoteConfig)
    assert (remote.protocol, remote.url, remote.model, remote.timeout_s) == ("tei", "http://tei:8080", "BAAI/bge-reranker-v2-m3", 5)
    assert remote.extra == {"a": 2, "b": 1} and hash(settings.rerankers)  # frozen, hashable settings
    assert local == ("local", "BAAI/bge-reranker-base")  # local entries stay (name, source) strings
    assert gemma == ("gemma", "/models/gemma#family=llm")
    assert settings.reranker_model is None  # the first entry is the default
    specs, default = reranker_specs(settings)
    assert default == "gpu" and specs[0].remote == remote
    assert (specs[2].source, specs[2].family) == ("/models/gemma", "llm")


def test_comma_form_still_works():
    settings = parse(" m3=BAAI/bge-reranker-v2-m3, local=/models/x=y ")
    assert settings.rerankers == (("m3", "BAAI/bge-reranker-v2-m3"), ("local", "/models/x=y"))


@pytest.mark.parametrize(("value", "message"), [
    ("[{", "must be a JSON list"),
    ('{"name": "x"}', "name=path_or_id"),
    ([{"model": "x"}], 'a "name" string'),
    ([{"name": "x"}], 'needs a "model"'),
    ([{"name": "x", "model": "m", "url": "http://a"}], "unknown field(s) url"),
    ([{"name": "x", "remote": {"protocol": "tei", "url": "http://a"}, "model": "m"}], "name and remote only"),
    ([{"name": "x", "remote": {"protocol": "grpc", "url": "http://a"}}], "protocol must be tei, vllm, infinity, cohere"),
    ([{"name": "x", "remote": {"protocol": "tei", "url": "tei:8080"}}], "http(s):// URL"),
    ([{"name": "x", "remote": {"protocol": "tei", "url": "http://u:p@tei"}}], "no credentials"),
    ([{"name": "x", "remote": {"protocol": "tei", "url": "http://a", "timeout_s": 0}}], "timeout_s must be a positive"),
    ([{"name": "x", "remote": {"protocol": "tei", "url": "http://a", "retries": -1}}], "retries must be an integer"),
    ([{"name": "x", "remote": {"protocol": "tei", "url": "http://a", "timeout": 5}}], "unknown remote option(s) timeout"),
    ([{"name": "x", "remote": {"protocol": "tei", "url": "http://a", "scores": "raw"}}], "scores must be"),
    ([{"name": "x", "remote": {"protocol": "vllm", "url": "http://a", "path": "score"}}], "path must start"),
    ([{"name": "a", "model": "m"}, {"name": "a", "remote": {"protocol": "tei", "url": "http://a"}}], "names 'a' twice"),
])
def test_bad_entries_are_refused_by_name(value, message):
    with pytest.raises(ConfigurationError) as error:
        parse(value)
    assert message in error.value.message


def test_the_remote_runtime_is_per_entry_not_global():
    with pytest.raises(ConfigurationError, match="RAG_RERANKER_RUNTIME must be torch, onnx, onnx-int8"):
        Settings.from_env({"RAG_RERANKER_RUNTIME": "remote"})


def test_remote_embedder_settings():
    settings = Settings.from_env({"RAG_EMBEDDER_URL": "http://tei:8080", "RAG_EMBEDDER_PROTOCOL": "TEI",
                                  "RAG_EMBEDDER_TIMEOUT_S": "7.5", "RAG_EMBEDDER_REMOTE_MODEL": "bge-m3"})
    remote = settings.embedder_remote
    assert (remote.protocol, remote.url, remote.timeout_s, remote.model) == ("tei", "http://tei:8080", 7.5, "bge-m3")
    assert Settings.from_env({}).embedder_remote is None
    assert Settings.from_env({"RAG_EMBEDDER_URL": "none"}).embedder_remote is None
    with pytest.raises(ConfigurationError, match="protocol must be openai, tei"):
        Settings.from_env({"RAG_EMBEDDER_URL": "http://a", "RAG_EMBEDDER_PROTOCOL": "cohere"})
    with pytest.raises(ConfigurationError, match="RAG_EMBEDDER_URL"):
        Settings.from_env({"RAG_EMBEDDER_URL": "ftp://a"})
