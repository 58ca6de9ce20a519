"""`benchmarks/rerank.py` runs all three engines (ours in three runtimes) on the tiny checkpoint
and prints its table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_rerank_benchmark_prints_a_table(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "rerank.py"),
            "--size",
            "tiny",
            "--queries",
            "1",
            "--passages",
            "8",
            "--passage-tokens",
            "64",
            "--ours",
            "torch-fp32,torch-fp32-padded,onnx,onnx-int8",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
        env={**os.environ, "RAG_BENCH_CACHE": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| engine | pairs/s")
    header = lines[0].strip(" |").split(" | ")
    rows = {
        row.strip(" |").split(" | ")[0].split(" (")[0]: dict(
            zip(header, row.strip(" |").split(" | "))
        )
        for row in lines[1:]
    }
    assert list(rows) == [
        "search-service torch-fp32",
        "search-service torch-fp32-padded",
        "search-service onnx",
        "search-service onnx-int8",
        "FlagEmbedding FlagReranker",
        "sentence-transformers CrossEncoder",
    ]
    for name, row in rows.items():
        diff = float(row["max abs diff vs FlagEmbedding"])
        if name.endswith("int8"):
            assert float(row["tau mean"]) > 0.5  # drift reported, not zero
        else:  # identical inputs, float32: the same scores as FlagEmbedding
            assert diff < 1e-4 and float(row["tau min"]) == 1.0
        assert float(row["GFLOP/s"]) > 0
    assert "fp32 GEMM rate:" in result.stdout and "sustained" in result.stdout
    assert "% of the measured sustained fp32 GEMM rate" in result.stdout
    assert "- ours fp32 (best of torch-fp32/onnx" in result.stdout
