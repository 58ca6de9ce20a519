"""Half dtypes on CPU: honoured where the model runs in them, else a clear error at load time.

`load_reranker` scores one short pair when float16/bfloat16 is asked for on CPU
(`check_half_precision`). The failures are real: a tiny checkpoint whose head overflows float16's
range (65504) and a family whose head calls an op CPU kernels lack for half types.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from search_service.errors import ConfigurationError
from search_service.rerankers import load_reranker
from search_service.rerankers.families.encoder import EncoderReranker
from search_service.services import load_rerankers
from search_service.settings import Settings

# Max |score - float32 score| over the parity pairs (scores span about -1..1.8), measured on the
# tiny encoder: float16 5.9e-3, bfloat16 8.9e-2 (8 bits of mantissa). About twice that here.
TOLERANCE = {"float16": 2e-2, "bfloat16": 0.2}


@pytest.fixture(scope="module")
def overflowing_dir(tiny_reranker_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder with a saturated classifier: tanh(dense + 50) = 1 in each of the 32
    hidden units, times out_proj weights of 4096 is a logit of 131072, finite in float32 and
    bfloat16 (float32's range), inf in float16. Every weight fits float16 on its own."""
    target = tmp_path_factory.mktemp("checkpoints") / "overflowing"
    shutil.copytree(tiny_reranker_dir, target)
    weights = load_file(target / "model.safetensors")
    weights["classifier.dense.bias"] = torch.full_like(weights["classifier.dense.bias"], 50.0)
    weights["classifier.out_proj.weight"] = torch.full_like(
        weights["classifier.out_proj.weight"], 4096.0
    )
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


class DeterminantHeadReranker(EncoderReranker):
    """A family (loaded by dotted path) whose head multiplies by det(I) = 1: a linalg op that
    CPU kernels do not implement for float16 or bfloat16."""

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = super().forward(batch)
        identity = torch.eye(2, dtype=logits.dtype, device=logits.device)
        return logits * torch.linalg.det(identity)


DETERMINANT_FAMILY = f"{__name__}.DeterminantHeadReranker"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_dtypes_on_cpu_load_and_score_close_to_float32(
    tiny_reranker_dir, shared_reranker, parity_pairs, dtype
):
    half = load_reranker(tiny_reranker_dir, device="cpu", dtype=dtype)
    assert half.dtype == getattr(torch, dtype)
    assert {p.dtype for p in half.model.parameters()} == {getattr(torch, dtype)}
    scores = half.score_pairs(parity_pairs)
    reference = shared_reranker.score_pairs(parity_pairs)
    assert scores == pytest.approx(reference, abs=TOLERANCE[dtype])
    assert scores != reference  # really computed in the half dtype


def test_float16_overflow_on_cpu_is_a_clear_error(overflowing_dir):
    with pytest.raises(ConfigurationError) as raised:
        load_reranker(overflowing_dir, device="cpu", dtype="float16")
    message = raised.value.message
    for fragment in ["float16 on cpu", "scores inf", "float32 or bfloat16", "RAG_RERANKER_DTYPE="]:
        assert fragment in message, message


def test_the_overflowing_checkpoint_serves_in_float32_and_bfloat16(overflowing_dir):
    """The error is float16's range, not a broken checkpoint: the other dtypes score it."""
    expected = 32 * 4096.0
    for dtype in ["float32", "bfloat16"]:
        reranker = load_reranker(overflowing_dir, device="cpu", dtype=dtype)
        scores = reranker.score("what is panda?", ["hi", "The giant panda is a bear."])
        assert all(math.isfinite(score) for score in scores)
        assert scores == pytest.approx([expected] * 2, rel=1e-2)


def test_settings_dtype_error_names_the_setting(overflowing_dir):
    settings = Settings(
        rerankers=(("big", str(overflowing_dir)),),
        reranker_model=None,
        reranker_dtype="float16",
        device="cpu",
    )
    with pytest.raises(
        ConfigurationError, match=r"RAG_RERANKERS \(big=\.\.\.\): .* float16 on cpu"
    ):
        load_rerankers(settings)


@pytest.mark.parametrize(
    "dtype, fix",
    [
        ("float16", "Use float32 or bfloat16 instead (e.g. RAG_RERANKER_DTYPE=float32"),
        ("bfloat16", "Use float32 instead (e.g. RAG_RERANKER_DTYPE=float32"),
    ],
)
def test_an_op_missing_for_half_on_cpu_is_a_clear_error(tiny_reranker_dir, dtype, fix):
    with pytest.raises(ConfigurationError) as raised:
        load_reranker(tiny_reranker_dir, device="cpu", dtype=dtype, family=DETERMINANT_FAMILY)
    message = raised.value.message
    for fragment in [f"cannot run in {dtype} on cpu", "forward pass fails", "not implemented", fix]:
        assert fragment in message, message
    assert message.endswith(f"or run {dtype} on a GPU")


def test_float32_is_not_probed_and_runs_the_same_family(tiny_reranker_dir, shared_reranker):
    reranker = load_reranker(tiny_reranker_dir, device="cpu", family=DETERMINANT_FAMILY)
    pairs = [("what is panda?", "The giant panda is a bear species endemic to China.")]
    assert reranker.score_pairs(pairs) == pytest.approx(
        shared_reranker.score_pairs(pairs), abs=1e-6
    )


ONEDNN_PROBES = {"float16": "_is_mkldnn_fp16_supported", "bfloat16": "_is_mkldnn_bf16_supported"}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_dtype_the_cpu_only_emulates_loads_with_a_warning(tiny_reranker_dir, caplog, dtype):
    """The warning shows exactly when oneDNN reports no instructions for the dtype on this CPU
    (this AVX2 machine: both), and it names the faster settings."""
    native = bool(getattr(torch.ops.mkldnn, ONEDNN_PROBES[dtype])())

    with caplog.at_level("WARNING", logger="search_service.rerankers"):
        load_reranker(str(tiny_reranker_dir), device="cpu", dtype=dtype)

    warned = [r.getMessage() for r in caplog.records if "instructions" in r.getMessage()]
    assert bool(warned) == (not native)
    if warned:
        assert f"no {dtype} instructions" in warned[0]
        assert "RAG_RERANKER_DTYPE=float32" in warned[0]
