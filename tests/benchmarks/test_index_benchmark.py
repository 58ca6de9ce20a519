"""`benchmarks/index.py` builds the service's Flat, IVF and HNSW indexes and prints their table."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_index_benchmark_prints_recall_for_every_kind():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "index.py"), "--data", "clustered", "--sizes", "4000",
         "--dim", "64", "--queries", "20", "--nprobe", "16,256", "--ef", "64"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| 4,000")]
    table = {(r[2].strip().split()[0], r[3].strip()): float(r[-1]) for r in rows}
    assert set(table) == {("flat", "exact"), ("ivf", "nprobe 16"), ("ivf", "nprobe 256"), ("hnsw", "efSearch 64")}
    assert table[("flat", "exact")] == 1.0 and table[("ivf", "nprobe 256")] == 1.0  # 102 lists: all probed
    assert 0.5 < table[("ivf", "nprobe 16")] < 1.0 and table[("hnsw", "efSearch 64")] > 0.8
    assert "cos@1" in result.stdout
