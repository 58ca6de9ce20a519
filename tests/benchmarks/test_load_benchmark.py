"""`benchmarks/load.py --spawn`, short: searches while uploads are ingested; no 5xx, no lost upload."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_benchmark_spawned_stack(tmp_path, minilm_path):
    output = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load.py"), "--spawn", "--embedder", minilm_path,
         "--clients", "4", "--duration", "5", "--seed-docs", "5", "--upload-ratio", "0.2",
         "--max-uploads", "8", "--threads", "4", "--drain-timeout", "120", "--json", str(output)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| endpoint"))
    assert "p50 ms" in header and "p99 ms" in header and "5xx" in header
    report = json.loads(output.read_text())
    rows = {row["endpoint"]: row for row in report["endpoints"]}
    assert set(rows) == {"search", "upload", "all"}
    assert rows["all"]["5xx"] == 0 and rows["all"]["connection_errors"] == 0
    assert rows["search"]["requests"] > 0 and rows["search"]["2xx"] == rows["search"]["requests"]
    assert 0 < report["uploads"] <= 8 and report["indexed"] == report["uploads"]
    assert report["lost"] == 0 and report["ok"] is True
    assert report["exit_statuses"] == {"serve": 0, "worker-0": 0}  # SIGTERM drains the server
