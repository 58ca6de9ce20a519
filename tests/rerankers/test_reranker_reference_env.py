"""The reference-env builder: cache key, reuse, one build under concurrency, rebuilds.

The real build (a few minutes) runs in the `slow` parity tests; here `_build` is replaced.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from search_service.testing import reference_env as env


@pytest.fixture
def fake_build(monkeypatch, tmp_path) -> list[str]:
    monkeypatch.setenv("RAG_REFERENCE_ENV_DIR", str(tmp_path / "reference"))
    builds: list[str] = []
    guard = threading.Lock()

    def build(venv):
        with guard:
            builds.append(str(venv))
        time.sleep(0.2)  # long enough for the other callers to queue on the file lock
        venv.mkdir(parents=True, exist_ok=True)
        (venv / env.COMPLETE_MARKER).write_text("done")

    monkeypatch.setattr(env, "_build", build)
    return builds


def test_key_follows_the_lock_file(monkeypatch, tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("FlagEmbedding==1.4.2\n")
    monkeypatch.setattr(env, "LOCK_FILE", lock)
    first = env.environment_key()
    lock.write_text("FlagEmbedding==1.4.3\n")
    assert env.environment_key() != first
    monkeypatch.delenv("RAG_REFERENCE_ENV_DIR", raising=False)
    assert env.environment_dir().name == f"reference-{env.environment_key()}"


def test_lock_pins_torch_and_flagembedding():
    lines = env.LOCK_FILE.read_text().splitlines()
    assert "torch==2.13.0" in lines
    assert "FlagEmbedding==1.4.2" in lines
    assert "transformers==4.46.0" in lines
    assert env.TORCH_REQUIREMENT == "torch==2.13.0"


def test_concurrent_callers_build_once_and_reuse(fake_build, tmp_path):
    with ThreadPoolExecutor(max_workers=4) as pool:
        pythons = list(pool.map(lambda _: env.ensure_reference_env(), range(4)))

    assert len(fake_build) == 1
    assert len(set(pythons)) == 1
    env.ensure_reference_env()
    assert len(fake_build) == 1


def test_incomplete_env_is_rebuilt(fake_build, tmp_path):
    (tmp_path / "reference").mkdir()  # an interrupted build: no completion marker
    env.ensure_reference_env()
    assert len(fake_build) == 1
