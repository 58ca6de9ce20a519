"""`benchmarks/families.py`: the GPU benchmark of every family, smoke-tested at the tiny size.

It builds each family's model in memory and wraps it in the family's reranker class; the smoke run
checks that the wrapped reranker scores exactly as `load_reranker` on a saved copy does (so the
benchmark times the serving code path), and the configs are checked to have the published sizes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "families.py"
# A default tiny run: every family, each at its smallest size (qwen3-reranker: 0.6b;
# mxbai-rerank: base-v2).
FAMILIES = [
    "encoder",
    "llm",
    "layerwise",
    "lightweight",
    "qwen3-reranker-0.6b",
    "mxbai-rerank-base-v2",
]


def _module():
    spec = importlib.util.spec_from_file_location("families_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_scores_every_family_as_load_reranker_does(tmp_path):
    output = tmp_path / "families.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--size",
            "tiny",
            "--device",
            "cpu",
            "--queries",
            "1",
            "--passages",
            "6",
            "--min-tokens",
            "20",
            "--max-tokens",
            "80",
            "--check-load",
            "--json",
            str(output),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| family | model | params M | dtype | batch | build s | pairs/s")
    printed = {row.split(" | ")[0].removeprefix("| "): row for row in rows[1:]}
    for family in FAMILIES:
        assert printed[family].endswith("| ok |"), printed[family]

    report = json.loads(output.read_text())
    assert [row["family"] for row in report["families"]] == FAMILIES
    for row in report["families"]:
        assert row["status"] == "ok"
        assert row["dtype"] == "float32"  # auto on a CPU
        assert row["pairs"] == 6
        assert row["pairs_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        scores = [score for query in row["scores"] for score in query]
        assert len(scores) == 6
        assert all(math.isfinite(score) for score in scores)
        assert len(set(scores)) > 1
        # The in-memory reranker is the one load_reranker builds from a checkpoint.
        assert row["load_max_abs_diff"] <= 1e-5, row["family"]

    peers = {(row["engine"], row["family"]): row for row in report["peers"]}
    assert set(peers) == {
        ("sentence-transformers", "encoder"),
        ("sentence-transformers", "qwen3-reranker-0.6b"),
    }
    for crossencoder in peers.values():
        assert crossencoder["status"] == "ok"
        assert crossencoder["pairs_per_s"] > 0
        assert crossencoder["max_abs_diff_vs_ours"] < 1e-4  # same model, same inputs


@pytest.mark.parametrize(
    ("family", "published"),
    # Parameters of the published checkpoints (the BGE model table): 568M, 2.51B, 2.72B, 9.24B;
    # Qwen3-Reranker (the hub's safetensors counts): 596M, 4.02B, 8.19B; mxbai-rerank-v2: those
    # of Qwen2.5-0.5B and -1.5B, which they are built on (494M, 1.54B).
    [
        ("encoder", 0.568e9),
        ("llm", 2.51e9),
        ("layerwise", 2.72e9),
        ("lightweight", 9.24e9),
        ("qwen3-reranker-0.6b", 0.596e9),
        ("qwen3-reranker-4b", 4.02e9),
        ("qwen3-reranker-8b", 8.19e9),
        ("mxbai-rerank-base-v2", 0.494e9),
        ("mxbai-rerank-large-v2", 1.54e9),
    ],
)
def test_real_configs_have_the_published_sizes(family, published):
    families = _module()
    model = families.build_model(family, families.REAL_CONFIGS[family], "meta", torch.float16)
    parameters = sum(param.numel() for param in model.parameters())
    assert abs(parameters - published) / published < 0.005
    assert model.dtype == torch.float16
