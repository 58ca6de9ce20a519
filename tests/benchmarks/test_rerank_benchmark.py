"""`benchmarks/rerank.py` runs all three engines on the tiny checkpoint and prints its table."""

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
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
        env={**os.environ, "RAG_BENCH_CACHE": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| engine | pairs/s")
    engines = [row.split(" | ")[0] for row in rows[1:]]
    assert [name.split(" (")[0] for name in engines] == [
        "| search-service",
        "| FlagEmbedding FlagReranker",
        "| sentence-transformers CrossEncoder",
    ]
    for row in rows[1:]:
        diff = float(row.rstrip(" |").split(" | ")[-1])
        assert diff < 1e-4  # identical inputs, float32: the same scores as FlagEmbedding
