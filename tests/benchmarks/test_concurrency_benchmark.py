"""`benchmarks/concurrency.py` and `benchmarks/latency.py` run on the tiny checkpoint through a
real `serve` process and print their tables; `benchmarks/host_cost.py` measures the host side of a
rerank request, ours and the peer's, and the launch cost of a forward."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(tmp_path, script: str, *arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *arguments],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
        env={**os.environ, "RAG_BENCH_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_concurrency_benchmark_compares_batching_off_and_on(tmp_path):
    out = _run(
        tmp_path,
        "concurrency.py",
        "--size",
        "tiny",
        "--seconds",
        "2",
        "--clients",
        "4",
        "--queries",
        "4",
        "--passages",
        "20",
        "--search",
    )
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ")]
    assert rows[0][:3] == ["| batching", "endpoint", "requests/s"]
    assert {(row[0], row[1]) for row in rows[1:]} == {
        ("| off", "/v1/rerank"),
        ("| off", "/v1/search"),
        ("| on", "/v1/rerank"),
        ("| on", "/v1/search"),
    }
    for row in rows[1:]:
        assert float(row[2]) > 0 and row[7] == "0"  # requests served, no errors
    assert "on/off throughput" in out
    padding = {
        line.split(": ")[1].split()[0]: float(line.split(" x")[1].split()[0])
        for line in out.splitlines()
        if line.startswith("padding (padded / real tokens)")
    }
    assert set(padding) == {"off", "on"} and all(value >= 1 for value in padding.values())
    diff = float(out.split("max |score on - score off|")[1].split(": ")[1].split()[0])
    assert diff < 1e-4


def test_latency_benchmark_splits_a_search(tmp_path):
    out = _run(tmp_path, "latency.py", "--size", "tiny", "--requests", "5", "--queries", "4", "--passages", "20")
    header, _, p50, p95 = [line for line in out.splitlines() if line.startswith("|")]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == [
        "ms",
        "embed",
        "search",
        "db",
        "rerank",
        "other",
        "total",
        "app",
        "transport",
        "wall",
        "forward",
        "overhead",
    ]
    assert p50.startswith("| p50 |") and p95.startswith("| p95 |")
    cells = dict(zip(columns, [cell.strip() for cell in p50.strip("|").split("|")], strict=True))
    app, transport, wall = (float(cells[name]) for name in ("app", "transport", "wall"))
    assert 0 < app < wall and 0 < transport < wall  # the server's own metric splits the HTTP part


def test_concurrency_modes_set_the_batching_environment():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from concurrency import mode_environment

    assert mode_environment("off") == {"RAG_BATCHING": "off"}
    assert mode_environment("on@131072x512") == {
        "RAG_BATCHING": "on",
        "RAG_BATCH_TOKEN_BUDGET": "131072",
        "RAG_BATCH_MAX_SIZE": "512",
    }
    assert mode_environment("on-serial") == {"RAG_BATCHING": "on", "RAG_BATCH_PIPELINE": "off"}


def test_host_cost_prints_every_row(tmp_path):
    out = _run(
        tmp_path,
        "host_cost.py",
        *("--requests", "4", "--launches", "3", "--layers", "2", "--queries", "3"),
        *("--passages", "10"),
    )
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ")]
    assert [row[0] for row in rows[1:]] == ["| request"] * 3 + ["| launch"]
    assert "token cache off" in rows[2][1] and "CrossEncoder" in rows[3][1]
    for row in rows[1:]:
        assert float(row[3]) > 0  # p50 ms
    assert rows[1][2] == "4" and rows[4][2] == "3"
