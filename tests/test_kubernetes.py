"""deploy/kubernetes/: core kinds validated by kubernetes-validate, KEDA's by its CRD schema, and
what the manifests name checked against the code: routes, settings, the jobs table, the image."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.support.manifests import (
    K8S,
    KEDA_SCHEMAS,
    ROOT,
    containers,
    deployment,
    flask_routes,
    keda_errors,
    kustomization,
    one,
    pod_specs,
    resources,
)

# The oldest Kubernetes still common in managed offerings, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def test_kustomization_lists_every_manifest():
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    kinds = sorted(d["kind"] for d in resources())
    assert kinds == sorted(["Secret", "ConfigMap", "Job", "Deployment", "Deployment", "Service",
                            "HorizontalPodAutoscaler", "PodDisruptionBudget", "TriggerAuthentication",
                            "ScaledObject"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_kinds_validate_strictly(version):
    core = [d for d in resources() if not d["apiVersion"].startswith("keda.sh/")]
    assert len(core) == 8
    for doc in core:
        # strict: a misspelt or misplaced field is an error, not silently dropped
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validate_rejects_a_misplaced_field():
    broken = copy.deepcopy(deployment("api"))
    probe = broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("kind", sorted(KEDA_SCHEMAS))
def test_keda_resources_validate_against_the_crd_schema(kind):
    schema_text = KEDA_SCHEMAS[kind].read_text()
    assert "github.com/kedacore/keda/blob/v2.20.2/config/crd/bases/" in json.loads(schema_text)["$comment"]
    doc = one(kind)
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    assert keda_errors(doc) == []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda so: so["spec"].update(minReplicaCount="one"), "minReplicaCount"),
    (lambda so: so["spec"]["triggers"][0].pop("type"), "'type' is a required property"),
    (lambda so: so["spec"]["triggers"][0].update(metdata=so["spec"]["triggers"][0].pop("metadata")), "metdata"),
    (lambda so: so["spec"]["scaleTargetRef"].pop("name"), "'name' is a required property"),
])
def test_the_keda_check_rejects_broken_scaled_objects(change, expected):
    broken = copy.deepcopy(one("ScaledObject"))
    change(broken)
    assert any(expected in error for error in keda_errors(broken)), keda_errors(broken)


def test_keda_scales_the_worker_deployment_with_the_secret_connection():
    scaled = one("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment("worker")["metadata"]["name"])
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "postgresql"
    assert float(trigger["metadata"]["targetQueryValue"]) > 0
    auth = one("TriggerAuthentication", trigger["authenticationRef"]["name"])
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "connection"
    assert ref["key"] in one("Secret", ref["name"])["stringData"]
    assert 0 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]


def test_the_secret_names_one_database_for_the_service_and_for_keda():
    data = one("Secret")["stringData"]
    service = make_url(data["database-url"])
    keda = urlsplit(data["keda-connection"])
    assert service.drivername == "postgresql+psycopg"
    assert keda.scheme == "postgresql"  # KEDA's pgx driver: a libpq URL, no SQLAlchemy driver suffix
    assert (service.host, service.port, service.database, service.username, service.password) == (
        keda.hostname, keda.port, keda.path.lstrip("/"), keda.username, keda.password)
    for spec in pod_specs():
        for container in containers(spec):
            [ref] = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if e["name"] == "RAG_DATABASE_URL"]
            assert (ref["name"], ref["key"]) == (one("Secret")["metadata"]["name"], "database-url")


def test_probes_ask_real_routes_on_the_container_port():
    routes = flask_routes()
    api = deployment("api")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    probes = {kind: api[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in routes
        assert probe["port"] in ports
    service = one("Service")
    assert service["spec"]["selector"] == deployment("api")["spec"]["selector"]["matchLabels"]
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"][0]["targetPort"] in ports
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment("api")["metadata"]["name"]
    assert api["resources"]["requests"]["cpu"]  # a CPU utilization target needs a request


def env_names() -> set[str]:
    names = set(one("ConfigMap")["data"])
    for spec in pod_specs():
        for container in containers(spec):
            names |= {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == one("ConfigMap")["metadata"]["name"]
    return names


def test_env_names_are_real_settings_and_the_example_values_parse():
    from search_service.settings import ENVIRONMENT, Settings

    assert env_names() - set(ENVIRONMENT) == set()
    config = one("ConfigMap")["data"]
    settings = Settings.from_env({**config, "RAG_DATABASE_URL": one("Secret")["stringData"]["database-url"]})
    assert settings.vector_backend == "pgvector"
    assert settings.auth_enabled


def dockerfile() -> str:
    return (ROOT / "docker" / "Dockerfile").read_text()


def test_image_port_user_and_volumes_match_the_dockerfile():
    from search_service.cli import main

    text = dockerfile()
    [exposed] = re.findall(r"^EXPOSE (\d+)$", text, re.MULTILINE)
    uid = int(re.search(r"^USER (\d+)", text, re.MULTILINE).group(1))
    volumes = set(json.loads(re.search(r"^VOLUME (\[.*\])$", text, re.MULTILINE).group(1)))
    assert re.search(r'^ENTRYPOINT \["search-service"\]$', text, re.MULTILINE)
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    image = compose["services"]["api"]["image"].split(":")[0]
    assert kustomization()["images"][0]["name"] == image
    api = deployment("api")["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in api["ports"]] == [int(exposed)]
    assert one("ConfigMap")["data"]["RAG_PORT"] == exposed
    for spec in pod_specs():
        assert spec["securityContext"]["runAsUser"] == uid
        for container in containers(spec):
            assert container["image"] == image
            if "args" in container:  # the entrypoint is `search-service`: args name a command
                assert container["args"][0] in main.commands
        for container in spec["containers"]:
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert mounts in (set(), volumes), container["name"]


def wait_for_schema_script() -> str:
    scripts = {
        container["command"][2]
        for component in ("api", "worker")
        for container in deployment(component)["spec"]["template"]["spec"]["initContainers"]
    }
    assert len(scripts) == 1  # api and worker wait the same way
    return scripts.pop()


def test_the_init_container_waits_for_the_migrate_job(tmp_path):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    env = {**os.environ, "RAG_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "RAG_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-c", wait_for_schema_script()]
    waiting = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first_line = waiting.stdout.readline()  # printed at its first try, then it sleeps 5 s
        assert "has no schema" in first_line and "run `search-service migrate` first" in first_line
        assert waiting.poll() is None  # still waiting, not failed
    finally:
        waiting.kill()
        waiting.communicate()
    migrate(url)
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    migrate_job = one("Job", "search-service-migrate")
    assert migrate_job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def keda_query() -> str:
    return one("ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]


def test_the_keda_query_covers_every_unfinished_job_state():
    from search_service.store.jobs import ACTIVE_STATES
    from search_service.store.models import FINAL_JOB_STATES, JOB_STATES

    named = set(re.findall(r"'([a-z_]+)'", keda_query()))
    assert named == set(JOB_STATES) - set(FINAL_JOB_STATES) == {"pending", *ACTIVE_STATES}


@pytest.mark.postgres
def test_the_keda_query_counts_the_jobs_that_need_a_worker():
    """On a migrated PostgreSQL database, through the job store the API and workers use."""
    import psycopg

    from search_service.store import collections as collection_store
    from search_service.store import jobs as job_store
    from search_service.store.db import Database, migrate
    from tests.conftest import _postgres_database

    databases = _postgres_database()
    url = next(databases)
    try:
        migrate(url)
        database = Database(url)
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

        def pending_count() -> int:
            with psycopg.connect(libpq) as connection:
                return connection.execute(keda_query()).fetchone()[0]

        def claim(worker: str, lease: float = 60.0):
            with database.session() as session:
                return job_store.claim_next_job(session, worker, lease_seconds=lease)

        with database.session() as session:
            collection = collection_store.create_collection(
                session, "docs", embedder_model="test/model", dimension=4, chunk_tokens=64, chunk_overlap=8)
            for i in range(6):
                job_store.create_job(session, collection, kind="documents", payload=b"[]", external_id=str(i))
            session.commit()
        assert pending_count() == 6

        held = claim("w1")  # pending -> parsing: still needs its worker
        assert pending_count() == 6
        with database.session() as session:
            assert job_store.retry_job(session, held.id, "w1", "embedder_error", "later", 3600)
        assert pending_count() == 5  # backing off for an hour: not due

        due = claim("w1")
        with database.session() as session:
            assert job_store.retry_job(session, due.id, "w1", "embedder_error", "now", 0)
        assert pending_count() == 5  # a retry whose run_after has come counts

        finished = claim("w2")
        with database.session() as session:
            assert job_store.end_job(session, finished.id, "w2", "failed", "invalid_payload", "no")
        assert pending_count() == 4

        claim("w3", lease=0.001)  # its worker "died": the expired lease is claimed again later
        assert pending_count() == 4
        database.dispose()
    finally:
        databases.close()
