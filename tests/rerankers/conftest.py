"""Fixtures for the reranker tests: tiny generated checkpoints of every family, each loaded once
per session, and `CONTRACT_RERANKERS`, every family and runtime the contract test runs over."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from search_service.rerankers import Reranker, load_reranker
from search_service.testing.tiny_encoder import make_tiny_encoder_reranker
from search_service.testing.tiny_layerwise import make_local_layerwise_reranker
from search_service.testing.tiny_lightweight import make_local_lightweight_reranker
from search_service.testing.tiny_llm import make_tiny_llm_reranker
from search_service.testing.tiny_qwen import make_tiny_qwen2_reranker, make_tiny_qwen3_reranker

LONG_PASSAGE = " ".join(
    ["The giant panda is a bear species endemic to China and it eats bamboo in the mountains."] * 60
)

# English, Chinese, mixed, an empty passage, passages past max_length and a very long query.
PARITY_PAIRS: list[tuple[str, str]] = [
    ("what is panda?", "hi"),
    (
        "what is panda?",
        (
            "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply "
            "panda, is a bear species endemic to China."
        ),
    ),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What is the capital of France?", "The population of China is over 1.4 billion people."),
    ("What is the population of China?", "The population of China is over 1.4 billion people."),
    ("熊猫是什么?", "大熊猫主要吃竹子,也吃少量的肉。"),
    ("法国的首都是哪里?", "法国的首都是巴黎。"),
    ("重排序模型是什么?", "Reranking scores every candidate passage against the query."),
    ("what is panda?", ""),
    ("", "An empty query still gets a score."),
    ("how do rerankers work?", LONG_PASSAGE),
    ("检索增强生成", "检索增强生成系统先检索候选段落,再用重排器排序。" * 80),
    ("what is panda? " * 150, "The giant panda is a bear species endemic to China."),
    ("what is panda? " * 150, LONG_PASSAGE),
    ("symbols & unknown pieces: ÆØÅ 😀 <mask>", "Bears eat bamboo, fish, honey and berries."),
]


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder_reranker(tmp_path_factory.mktemp("checkpoints") / "bge-reranker-tiny")


@pytest.fixture(scope="session")
def _session_reranker(tiny_reranker_dir: Path) -> Reranker:
    return load_reranker(tiny_reranker_dir, device="cpu")


@pytest.fixture
def tiny_reranker(_session_reranker: Reranker) -> Reranker:
    """A private copy per test, so a test that patches the model cannot leak into another."""
    return copy.deepcopy(_session_reranker)


@pytest.fixture(scope="session")
def shared_reranker(_session_reranker: Reranker) -> Reranker:
    """The session's instance, for read-only tests (cheaper than a copy)."""
    return _session_reranker


@pytest.fixture(scope="session")
def padded_reranker(_session_reranker: Reranker) -> Reranker:
    """The encoder with padded batches (`shared_reranker` packs them on a CPU)."""
    reranker = copy.deepcopy(_session_reranker)
    reranker.packed = False
    return reranker


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def onnx_reranker(tiny_reranker_dir: Path, onnx_cache: Path) -> Reranker:
    return load_reranker(tiny_reranker_dir, device="cpu", runtime="onnx", onnx_cache_dir=onnx_cache)


@pytest.fixture(scope="session")
def int8_reranker(tiny_reranker_dir: Path, onnx_cache: Path, onnx_reranker: Reranker) -> Reranker:
    return load_reranker(
        tiny_reranker_dir, device="cpu", runtime="onnx-int8", onnx_cache_dir=onnx_cache
    )


@pytest.fixture(scope="session")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llm_reranker(tmp_path_factory.mktemp("checkpoints") / "bge-gemma-tiny")


@pytest.fixture(scope="session")
def llm(llm_dir: Path) -> Reranker:
    return load_reranker(llm_dir, device="cpu")


@pytest.fixture(scope="session")
def layerwise_local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Saved by our model class; `tests/reference/checkpoints.py` has FlagEmbedding's."""
    return make_local_layerwise_reranker(tmp_path_factory.mktemp("checkpoints") / "layerwise")


@pytest.fixture(scope="session")
def layerwise_local(layerwise_local_dir: Path) -> Reranker:
    return load_reranker(layerwise_local_dir, device="cpu")


@pytest.fixture(scope="session")
def lightweight_local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_local_lightweight_reranker(tmp_path_factory.mktemp("checkpoints") / "lightweight")


@pytest.fixture(scope="session")
def lightweight_local(lightweight_local_dir: Path) -> Reranker:
    return load_reranker(lightweight_local_dir, device="cpu")


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3ForCausalLM, found to be a Qwen3-Reranker by its directory name."""
    return make_tiny_qwen3_reranker(tmp_path_factory.mktemp("checkpoints") / "Qwen3-Reranker-tiny")


@pytest.fixture(scope="session")
def qwen3(qwen3_dir: Path) -> Reranker:
    return load_reranker(qwen3_dir, device="cpu")


@pytest.fixture(scope="session")
def mxbai_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mxbai-rerank-v2 (Qwen2ForCausalLM), named so that its family is chosen by name."""
    return make_tiny_qwen2_reranker(tmp_path_factory.mktemp("checkpoints") / "mxbai-rerank-tiny-v2")


@pytest.fixture(scope="session")
def mxbai(mxbai_dir: Path) -> Reranker:
    return load_reranker(mxbai_dir, device="cpu")


# Every family and runtime, by the name the contract test gives it: the fixture that loads it.
CONTRACT_RERANKERS = {
    "encoder-torch": "padded_reranker",
    "encoder-packed": "shared_reranker",
    "encoder-onnx": "onnx_reranker",
    "encoder-onnx-int8": "int8_reranker",
    "llm": "llm",
    "layerwise": "layerwise_local",
    "lightweight": "lightweight_local",
    "qwen3-reranker": "qwen3",
    "mxbai-rerank": "mxbai",
}


@pytest.fixture
def offline_hf_home(tmp_path, monkeypatch) -> Path:
    """A temporary HF_HOME in offline mode: lay a checkpoint out in it with
    `search_service.testing.tiny_encoder.install_in_hf_cache(checkpoint, offline_hf_home, repo_id)`, then
    `load_reranker(repo_id)` finds it with no `cache_dir`.

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


@pytest.fixture(scope="session")
def parity_pairs() -> list[tuple[str, str]]:
    return list(PARITY_PAIRS)


def batch_shape(batch) -> tuple[int, int]:
    """(pairs, longest pair) of a collated batch, padded or packed (rerankers/runtimes/packed.py)."""
    bounds = batch.get("cu_seq_lens_q")
    if bounds is None:
        return tuple(batch["input_ids"].shape)
    lengths = (bounds[1:] - bounds[:-1]).tolist()
    return len(lengths), max(lengths)
