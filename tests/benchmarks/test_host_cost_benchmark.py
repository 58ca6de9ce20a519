"""`benchmarks/host_cost.py` measures the host side of a rerank request, ours and the peer's, and
the launch cost of a forward, on the tiny checkpoint."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_host_cost_prints_every_row(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "host_cost.py"), "--requests", "4",
         "--launches", "3", "--layers", "2", "--queries", "3", "--passages", "10"],
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
        env={**os.environ, "RAG_BENCH_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row[0] for row in rows[1:]] == ["| request"] * 3 + ["| launch"]
    assert "token cache off" in rows[2][1] and "CrossEncoder" in rows[3][1]
    for row in rows[1:]:
        assert float(row[3]) > 0  # p50 ms
    assert rows[1][2] == "4" and rows[4][2] == "3"
