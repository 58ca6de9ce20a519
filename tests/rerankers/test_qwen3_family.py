"""The `qwen3-reranker` family on a tiny generated Qwen3ForCausalLM: how it is chosen, its inputs,
and its scores against two references, in this process (both need transformers >= 4.51):

- the Qwen3-Embedding README's example code (tests/reference/qwen3_reranker_readme.py), including
  the truncation edges (a long document, a long instruction, a body budget of one token) and
  batches of mixed lengths;
- sentence-transformers' `CrossEncoder` (6.x runs causal-LM rerankers: a chat template that
  renders the query and document roles, then logit(yes) - logit(no)), on pairs that fit.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import warnings

import pytest
import torch

from search_service.errors import ConfigurationError
from search_service.rerankers import load_reranker, sigmoid
from search_service.rerankers.families.qwen3 import (
    CHAT_TEMPLATE,
    DEFAULT_INSTRUCTION,
    DEFAULT_MAX_LENGTH,
    PREFIX,
    SUFFIX,
    Qwen3Reranker,
)
from search_service.rerankers.registry import FAMILIES, checkpoint_name, choose_family
from tests.reference import qwen3_reranker_readme as readme

TOLERANCE = 1e-5
CAUSAL = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}
CUSTOM_INSTRUCTION = "Given a question, find the passage that answers it"
LONG_INSTRUCTION = " ".join([DEFAULT_INSTRUCTION] * 20)

# -- choosing the family -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Qwen/Qwen3-Reranker-0.6B",
        "/models/Qwen3-Reranker-8B/",
        "/models/qwen3-reranker-4b-awq",
        "/hf/hub/models--Qwen--Qwen3-Reranker-4B/snapshots/57906229d41697e4494d50ca5859598cf86154a1",
    ],
)
def test_a_causal_lm_named_qwen3_reranker_is_the_family(name):
    family, rule = choose_family(CAUSAL, name)
    assert family == "qwen3-reranker"
    assert "Qwen3-Reranker" in rule and checkpoint_name(name) in rule


@pytest.mark.parametrize(
    "config, name, family",
    [
        (CAUSAL, "/models/Qwen3-8B", "llm"),  # a plain Qwen3 stays an llm reranker
        (CAUSAL, "/models/Qwen3-Reranker-0.6B/snapshots/x/../y-bge", "llm"),  # the last part counts
        (
            {"architectures": ["Qwen3ForSequenceClassification"], "num_labels": 1},
            "tomaarsen/Qwen3-Reranker-0.6B-seq-cls",
            "encoder",  # converted to a classifier: config.json decides
        ),
    ],
)
def test_the_name_only_refines_a_causal_lm(config, name, family):
    assert choose_family(config, name)[0] == family


def test_an_mxbai_name_needs_its_family_registered():
    expected = "mxbai-rerank" if "mxbai-rerank" in FAMILIES else "llm"
    assert choose_family(CAUSAL, "mixedbread-ai/mxbai-rerank-base-v2")[0] == expected


def test_a_given_family_wins_and_says_so():
    assert choose_family(CAUSAL, "Qwen/Qwen3-Reranker-0.6B", "llm") == (
        "llm",
        "family=llm was given",
    )


@pytest.fixture(scope="module")
def plain_dir(qwen3_dir, tmp_path_factory):
    """The same checkpoint under a name that says nothing: the llm family by default."""
    folder = tmp_path_factory.mktemp("renamed") / "my-reranker"
    shutil.copytree(qwen3_dir, folder)
    return folder


def test_the_suffix_chooses_the_family_and_the_rule_is_logged(plain_dir, caplog):
    caplog.set_level(logging.INFO, logger="search_service.rerankers.loading")
    assert load_reranker(plain_dir, device="cpu").family == "llm"
    assert "family llm, chosen by config.json (architectures=['Qwen3ForCausalLM']" in caplog.text
    chosen = load_reranker(f"{plain_dir}#family=qwen3-reranker", device="cpu")
    assert isinstance(chosen, Qwen3Reranker) and chosen.name == str(plain_dir)
    assert "family qwen3-reranker, chosen by family=qwen3-reranker was given" in caplog.text
    with pytest.raises(ConfigurationError, match="contradicts family=llm"):
        load_reranker(f"{plain_dir}#family=qwen3-reranker", device="cpu", family="llm")


def test_a_hub_cache_snapshot_is_named_by_its_repository(plain_dir, tmp_path):
    from search_service.testing.tiny_encoder import install_in_hf_cache

    snapshot = install_in_hf_cache(plain_dir, tmp_path / "home", "Qwen/Qwen3-Reranker-tiny")
    assert load_reranker(str(snapshot), device="cpu").family == "qwen3-reranker"


def test_settings_choose_the_family(plain_dir):
    from search_service.services import load_reranker_spec, reranker_specs
    from search_service.settings import Settings

    settings = Settings(
        rerankers=(("q", f"{plain_dir}#family=qwen3-reranker"), ("p", str(plain_dir))),
        reranker_model=None,
        device="cpu",
    )
    specs, default = reranker_specs(settings)
    assert default == "q"
    assert [load_reranker_spec(spec, "cpu").family for spec in specs] == ["qwen3-reranker", "llm"]
    by_family = Settings(reranker_model=str(plain_dir), reranker_family="qwen3-reranker")
    (spec,), _ = reranker_specs(by_family)
    assert load_reranker_spec(spec, "cpu").family == "qwen3-reranker"


# -- loading and inputs --------------------------------------------------------------------------


def test_tiny_checkpoint_loads_as_qwen3_reranker(qwen3):
    assert isinstance(qwen3, Qwen3Reranker) and qwen3.family == "qwen3-reranker"
    assert type(qwen3.model).__name__ == "Qwen3ForCausalLM"
    assert qwen3.max_length == DEFAULT_MAX_LENGTH == 8192
    assert qwen3.inputs.padding_side == "left"
    tokens = qwen3.tokenizer.convert_ids_to_tokens([qwen3.yes_id, qwen3.no_id])
    assert tokens == ["yes", "no"]


def test_inputs_are_the_template_with_only_the_body_cut(qwen3):
    tokenizer = qwen3.tokenizer
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    body = f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: what is panda?\n<Document>: hi"
    (feature,) = qwen3.tokenize([("what is panda?", "hi")], 8192)
    assert feature.input_ids == encode(PREFIX) + encode(body) + encode(SUFFIX)
    template = len(encode(PREFIX)) + len(encode(SUFFIX))
    (cut,) = qwen3.tokenize([("what is panda?", "hi " * 500)], template + 10)
    assert len(cut) == template + 10
    assert cut.input_ids[-len(encode(SUFFIX)) :] == encode(SUFFIX)
    assert len(qwen3.tokenize([("q", "d")], 1)[0]) == template  # the template is never cut


def test_the_prompt_is_the_instruction(qwen3):
    (feature,) = qwen3.tokenize([("q", "d")], 8192, prompt=CUSTOM_INSTRUCTION)
    text = qwen3.tokenizer.decode(feature.input_ids)
    assert f"<Instruct>: {CUSTOM_INSTRUCTION}\n<Query>: q\n<Document>: d" in text
    default = qwen3.score("q", ["d", "e"])
    assert qwen3.score("q", ["d", "e"], prompt=CUSTOM_INSTRUCTION) != pytest.approx(default)


def test_a_query_max_length_is_refused(qwen3):
    with pytest.raises(TypeError):
        qwen3.score("q", ["d"], query_max_length=4)


# -- the README's reference code ---------------------------------------------------------------


def readme_scores(pairs, **options) -> list[float]:
    with warnings.catch_warnings():
        # The README pads with padding=True and a max_length, which transformers warns is ignored.
        warnings.filterwarnings("ignore", message="`max_length` is ignored when `padding`=`True`")
        return readme.scores(pairs, **options)


# (name, score options, reference options, pairs chunked for the reference: None = one batch)
README_JOBS = {
    "default": ({}, {}, 1),  # unbatched reference; the long pairs are whole (no truncation)
    "max_length_128": ({"max_length": 128}, {"length": 128}, None),  # mixed lengths, cut
    "instruction": (
        {"prompt": CUSTOM_INSTRUCTION, "max_length": 256},
        {"task": CUSTOM_INSTRUCTION, "length": 256},
        None,
    ),
    # the instruction alone overflows the body: the query and document are cut away
    "long_instruction": (
        {"prompt": LONG_INSTRUCTION, "max_length": 160},
        {"task": LONG_INSTRUCTION, "length": 160},
        None,
    ),
    # ... or leaves a few tokens of the query
    "long_instruction_400": (
        {"prompt": LONG_INSTRUCTION, "max_length": 400},
        {"task": LONG_INSTRUCTION, "length": 400},
        None,
    ),
}


@pytest.fixture(scope="module")
def reference(qwen3_dir, parity_pairs) -> dict[str, list[float]]:
    readme.load(str(qwen3_dir))
    results = {}
    for name, (_, options, chunk) in README_JOBS.items():
        options = {"length": DEFAULT_MAX_LENGTH, **options}
        size = chunk or len(parity_pairs)
        results[name] = [
            score
            for start in range(0, len(parity_pairs), size)
            for score in readme_scores(parity_pairs[start : start + size], **options)
        ]
    return results


def _ours(qwen3, pairs, options, **extra):
    """Our probabilities of "yes" (the reference's scores): the sigmoid of the raw scores, which
    is what `normalize=True` gives (the contract test checks that)."""
    return [sigmoid(score) for score in qwen3.score_pairs(pairs, **options, **extra)]


@pytest.mark.parametrize("job", README_JOBS)
def test_scores_match_the_readme_code(qwen3, parity_pairs, reference, job):
    options = README_JOBS[job][0]
    assert _ours(qwen3, parity_pairs, options) == pytest.approx(reference[job], abs=TOLERANCE)


def test_mixed_length_batches_match_the_readme_code(qwen3, parity_pairs, reference):
    # Our batches: longest first, padded to a multiple of 8; the reference's: one padded batch.
    options = README_JOBS["max_length_128"][0]
    for batch_size in (1, 4):  # (and the default, all in one batch, in the test above)
        scores = _ours(qwen3, parity_pairs, options, batch_size=batch_size)
        assert scores == pytest.approx(reference["max_length_128"], abs=TOLERANCE), batch_size


def test_the_references_exercise_truncation(qwen3, parity_pairs, reference):
    scores = reference["default"]
    assert max(scores) - min(scores) > 0.3
    assert len({round(score, 3) for score in scores}) >= len(scores) - 2
    lengths = [len(feature) for feature in qwen3.tokenize(parity_pairs, DEFAULT_MAX_LENGTH)]
    assert max(lengths) > 1000  # the long pairs are long, and whole at 8192
    cut = [i for i, length in enumerate(lengths) if length > 128]
    assert any(abs(scores[i] - reference["max_length_128"][i]) > 1e-3 for i in cut)
    # One body token short of the instruction: every pair looks the same.
    assert len({round(s, 6) for s in reference["long_instruction"]}) == 1


def test_a_one_token_body_matches_the_readme_code(qwen3, parity_pairs):
    template = len(qwen3.prefix_ids) + len(qwen3.suffix_ids)
    for length in (template + 1, template + 2):
        expected = readme_scores(parity_pairs[:4], length=length)
        assert _ours(qwen3, parity_pairs[:4], {"max_length": length}) == pytest.approx(
            expected, abs=TOLERANCE
        )


# -- sentence-transformers' CrossEncoder ----------------------------------------------------------


def test_scores_match_sentence_transformers_cross_encoder(qwen3, qwen3_dir, parity_pairs):
    # Causal-LM rerankers (LogitScore) came with sentence-transformers 5.4; the venv has 6.x.
    pytest.importorskip("sentence_transformers.cross_encoder.modules.logit_score")
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(
        str(qwen3_dir),
        device="cpu",
        processor_kwargs={"chat_template": CHAT_TEMPLATE},
    )
    fitting = [pair for pair in parity_pairs if len(qwen3.tokenize([pair], 8192)[0]) <= 512]
    assert len(fitting) >= 10
    raw = model.predict(fitting, activation_fn=torch.nn.Identity(), batch_size=4).tolist()
    assert all(math.isfinite(score) for score in raw) and max(raw) - min(raw) > 1
    assert qwen3.score_pairs(fitting) == pytest.approx(raw, abs=TOLERANCE)


# -- OOM back-off, dtypes, the tiny checkpoints ---------------------------------------------------


def test_oom_halves_the_batch_and_keeps_scores(qwen3, parity_pairs, monkeypatch):
    pairs = parity_pairs[:9]
    expected = qwen3.score_pairs(pairs, batch_size=4, max_length=128)
    forward, rows = qwen3.forward, []

    def failing(batch):
        rows.append(batch["input_ids"].shape[0])
        if len(rows) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(batch)

    monkeypatch.setattr(qwen3, "forward", failing)
    scores = qwen3.score_pairs(pairs, batch_size=4, max_length=128)
    assert scores == pytest.approx(expected, abs=TOLERANCE)
    assert rows == [4, 4, 2, 2, 1]  # 4 pass, 4 fail, then halves cover the 5 left


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_dtypes_load_and_score(qwen3, qwen3_dir, parity_pairs, dtype):
    half = load_reranker(qwen3_dir, device="cpu", dtype=dtype)
    assert str(half.dtype) == f"torch.{dtype}"
    assert {param.dtype for param in half.model.parameters()} == {half.dtype}
    expected = qwen3.score_pairs(parity_pairs[:6], max_length=256)
    scores = half.score_pairs(parity_pairs[:6], max_length=256)
    # The tiny model's wide weights magnify rounding: bfloat16 keeps 8 bits of mantissa.
    assert scores == pytest.approx(expected, abs=0.05 if dtype == "float16" else 0.5)


def test_tiny_qwen_checkpoints_tokenize_alike_and_are_deterministic(qwen3_dir, tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from search_service.testing.tiny_qwen import make_tiny_qwen2_reranker, make_tiny_qwen3_reranker

    rebuilt = AutoTokenizer.from_pretrained(qwen3_dir)  # transformers 5 rebuilds Qwen2Tokenizer
    raw = Tokenizer.from_file(str(qwen3_dir / "tokenizer.json"))
    texts = [PREFIX, SUFFIX, "大熊猫 😀 ÆØÅ <mask>\r\n\tyes no 1 0 x", "<|im_end|> <think>"]
    for text in texts:
        ids = rebuilt(text, add_special_tokens=False)["input_ids"]
        assert ids == raw.encode(text, add_special_tokens=False).ids
        assert rebuilt.decode(ids) == text
    assert [len(rebuilt.tokenize(word)) for word in ("yes", "no", "1", "0")] == [1, 1, 1, 1]
    assert (rebuilt.pad_token, rebuilt.padding_side, rebuilt.bos_token) == (
        "<|endoftext|>",
        "left",
        None,
    )
    again = make_tiny_qwen3_reranker(tmp_path / "again")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors"):
        assert (again / name).read_bytes() == (qwen3_dir / name).read_bytes(), name
    qwen2 = make_tiny_qwen2_reranker(tmp_path / "qwen2")
    config = json.loads((qwen2 / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert (qwen2 / "tokenizer.json").read_bytes() == (qwen3_dir / "tokenizer.json").read_bytes()


def test_auto_is_bfloat16_on_a_gpu_that_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert Qwen3Reranker.default_dtype("cuda:0") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert Qwen3Reranker.default_dtype("cuda") == "float16"
    assert Qwen3Reranker.default_dtype("cpu") is None  # float32
