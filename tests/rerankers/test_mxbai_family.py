"""The `mxbai-rerank` family (mxbai-rerank-v2) on a tiny generated Qwen2ForCausalLM.

The `slow` tests compare inputs and scores with the reference package mxbai-rerank 0.1.6
(`MxbaiRerankV2`) in its own transformers 4.57 env (search_service/testing/mxbai_env.py,
tests/reference/score_mxbai.py), all jobs in one subprocess.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil

import pytest
import torch

from search_service.rerankers import load_reranker, sigmoid
from search_service.rerankers.families.llm import LLMReranker
from search_service.rerankers.families.mxbai import (
    CHAT_PREFIX,
    CHAT_SUFFIX,
    REFERENCE_MAX_LENGTH,
    TASK_PROMPT,
    MxbaiReranker,
)
from search_service.rerankers.registry import choose_family
from search_service.testing import mxbai_env, pinned_env

QUERY = "what is panda?"
DOCUMENT = "The giant panda is a bear species endemic to China."
INSTRUCTION = "Find passages about animals."
LONG_QUERY = "what is panda? " * 150
LONG_DOCUMENT = "The giant panda is a bear species endemic to China. " * 120


def text_of(reranker, feature) -> str:
    return reranker.tokenizer.decode(feature.input_ids)


def limited_positions(source, target, positions: int):
    """A copy of the checkpoint whose config allows `positions` positions."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config["max_position_embeddings"] = positions
    (target / "config.json").write_text(json.dumps(config))
    return target


# -- choice of the family ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "mixedbread-ai/mxbai-rerank-base-v2",
        "mixedbread-ai/mxbai-rerank-large-v2",
        "/models/MXBAI-Rerank-Large-V2",
        "/cache/models--mixedbread-ai--mxbai-rerank-base-v2/snapshots/0123abcd",
    ],
)
def test_published_names_choose_the_family(name):
    family, rule = choose_family({"architectures": ["Qwen2ForCausalLM"]}, name)
    assert family == "mxbai-rerank" and "mxbai-rerank" in rule


def test_other_qwen2_lms_stay_llm():
    assert choose_family({"architectures": ["Qwen2ForCausalLM"]}, "Qwen/Qwen2-0.5B")[0] == "llm"


def test_loaded_by_name_by_suffix_and_otherwise_llm(mxbai, mxbai_dir, tmp_path, caplog):
    assert isinstance(mxbai, MxbaiReranker) and mxbai.family == "mxbai-rerank"
    assert type(mxbai.model).__name__ == "Qwen2ForCausalLM"
    assert mxbai.tokenizer.convert_ids_to_tokens([mxbai.yes_id, mxbai.no_id]) == ["1", "0"]
    assert mxbai.inputs.padding_side == "left"
    plain = shutil.copytree(mxbai_dir, tmp_path / "qwen2-tiny")
    assert isinstance(load_reranker(plain, device="cpu"), LLMReranker)
    with caplog.at_level(logging.INFO, logger="search_service.rerankers.loading"):
        chosen = load_reranker(f"{plain}#family=mxbai-rerank", device="cpu")
    assert isinstance(chosen, MxbaiReranker)
    assert "family mxbai-rerank, chosen by family=mxbai-rerank" in caplog.text
    assert chosen.score(QUERY, [DOCUMENT]) == mxbai.score(QUERY, [DOCUMENT])


def test_the_reference_env_pins_the_package_on_transformers_4(monkeypatch, tmp_path):
    lines = mxbai_env.LOCK_FILE.read_text().splitlines()
    assert {"mxbai-rerank==0.1.6", "transformers==4.57.6", "torch==2.13.0"} <= set(lines)
    monkeypatch.delenv(mxbai_env.DIR_VARIABLE, raising=False)
    key = pinned_env.environment_key(mxbai_env.LOCK_FILE)
    assert mxbai_env.environment_dir().name == f"mxbai-reference-{key}"
    monkeypatch.setenv(mxbai_env.DIR_VARIABLE, str(tmp_path / "mxbai"))
    assert mxbai_env.environment_dir() == tmp_path / "mxbai"


# -- inputs --------------------------------------------------------------------------------------


def test_inputs_are_the_reference_template(mxbai):
    (plain,) = mxbai.tokenize([(QUERY, DOCUMENT)], 512)
    body = f"query: {QUERY}\ndocument: {DOCUMENT}"
    assert text_of(mxbai, plain) == f"{CHAT_PREFIX}{body}\n{TASK_PROMPT}{CHAT_SUFFIX}"
    (instructed,) = mxbai.tokenize([(QUERY, DOCUMENT)], 512, prompt=INSTRUCTION)
    assert text_of(mxbai, instructed) == (
        f"{CHAT_PREFIX}instruction: {INSTRUCTION}\n{body}\n{TASK_PROMPT}{CHAT_SUFFIX}"
    )
    # An empty instruction is none, as in the reference (`if instruction:`).
    assert mxbai.tokenize([(QUERY, DOCUMENT)], 512, prompt="") == [plain]


def test_the_pair_is_cut_to_max_length(mxbai):
    template = mxbai.template.length
    long_query, long_document, both = mxbai.tokenize(
        [(LONG_QUERY, "hi"), (QUERY, LONG_DOCUMENT), (LONG_QUERY, LONG_DOCUMENT)], 64
    )
    assert long_query.query_length - len(mxbai.template.prefix) == 48  # 3/4 of max_length
    assert len(long_document) == len(both) == 64 + template  # the document fills the rest
    assert len(long_query) < 64 + template  # a short document is kept whole
    (short_query,) = mxbai.tokenize([(LONG_QUERY, LONG_DOCUMENT)], 64, query_max_length=5)
    assert short_query.query_length - len(mxbai.template.prefix) == 5
    assert len(short_query) == 64 + template
    assert text_of(mxbai, short_query).endswith(f"\n{TASK_PROMPT}{CHAT_SUFFIX}")


def test_max_length_defaults_to_the_reference_within_the_positions(mxbai, mxbai_dir, tmp_path):
    positions = mxbai.model.config.max_position_embeddings
    assert mxbai.max_supported_length == positions - mxbai.template.length
    assert mxbai.max_length == min(REFERENCE_MAX_LENGTH, mxbai.max_supported_length)
    small = load_reranker(limited_positions(mxbai_dir, tmp_path / "mxbai-rerank-192", 192), "cpu")
    assert small.max_length == small.max_supported_length == 192 - small.template.length
    features = small.tokenize(
        [(LONG_QUERY, LONG_DOCUMENT), (QUERY, LONG_DOCUMENT)], small.max_length
    )
    assert [len(feature) for feature in features] == [192, 192]
    assert small.score(QUERY, [LONG_DOCUMENT], max_length=512) == small.score(
        QUERY, [LONG_DOCUMENT]
    )


# -- scores --------------------------------------------------------------------------------------


def test_the_score_is_the_logit_of_1_minus_the_logit_of_0(mxbai):
    (feature,) = mxbai.tokenize([(QUERY, DOCUMENT)], 512)
    with torch.inference_mode():
        logits = mxbai.model(input_ids=torch.tensor([feature.input_ids])).logits[0, -1]
    expected = float(logits[mxbai.yes_id] - logits[mxbai.no_id])
    (raw,) = mxbai.score(QUERY, [DOCUMENT])
    assert raw == pytest.approx(expected, abs=1e-5)
    (normalized,) = mxbai.score(QUERY, [DOCUMENT], normalize=True)
    assert normalized == pytest.approx(sigmoid(raw), abs=1e-7)


def test_the_instruction_changes_the_scores(mxbai):
    passages = [DOCUMENT, "Paris is the capital of France.", "hi"]
    plain = mxbai.score(QUERY, passages)
    instructed = mxbai.score(QUERY, passages, prompt=INSTRUCTION)
    assert instructed != pytest.approx(plain, abs=1e-3)
    assert all(math.isfinite(score) for score in plain + instructed)


def test_float32_on_cpu(mxbai):
    assert MxbaiReranker.default_dtype("cpu") is None
    assert mxbai.dtype == mxbai.model.dtype == torch.float32


def test_out_of_memory_halves_the_batch(mxbai, monkeypatch):
    reranker = copy.deepcopy(mxbai)
    passages = [f"passage {i}: " + "The giant panda eats bamboo. " * (i + 1) for i in range(6)]
    expected = reranker.score(QUERY, passages, batch_size=4)
    forward, rows = reranker.forward, []

    def failing_once(batch):
        rows.append(batch["input_ids"].shape[0])
        if len(rows) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(batch)

    monkeypatch.setattr(reranker, "forward", failing_once)
    assert reranker.score(QUERY, passages, batch_size=4) == pytest.approx(expected, abs=1e-5)
    assert rows == [4, 2, 2, 2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_half_precision_on_a_gpu_follows_float32(mxbai_dir, mxbai):
    """bfloat16 (the default there) and float16 on the GPU rank as float32 on the CPU does."""
    passages = [DOCUMENT, "Paris is the capital of France.", "hi", LONG_DOCUMENT]
    expected = mxbai.score(QUERY, passages, prompt=INSTRUCTION)
    for dtype in ("auto", "float16"):
        gpu = load_reranker(mxbai_dir, device="cuda", dtype=dtype)
        assert gpu.dtype == (torch.float16 if dtype == "float16" else torch.bfloat16)
        scores = gpu.score(QUERY, passages, prompt=INSTRUCTION, batch_size=2)
        assert scores == pytest.approx(expected, abs=0.1 if dtype == "float16" else 0.5)
    exact = load_reranker(mxbai_dir, device="cuda", dtype="float32")
    assert exact.score(QUERY, passages, prompt=INSTRUCTION) == pytest.approx(expected, abs=1e-4)
