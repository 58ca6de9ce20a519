"""deploy/kubernetes/ read as the tests need it: the kustomization's resources, looked up by kind
and name, the KEDA CRD schema check, and the app's routes to compare probes with."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
SCHEMAS = K8S / "schemas"
KEDA_SCHEMAS = {
    "ScaledObject": SCHEMAS / "keda-scaledobject-v2.20.2.json",
    "TriggerAuthentication": SCHEMAS / "keda-triggerauthentication-v2.20.2.json",
}


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def resources() -> list[dict]:
    docs = []
    for name in kustomization()["resources"]:
        docs.extend(doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc)
    return docs


def one(kind: str, name: str | None = None) -> dict:
    found = [d for d in resources() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def deployment(component: str) -> dict:
    return one("Deployment", f"search-service-{component}")


def pod_specs() -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in resources() if d["kind"] in ("Deployment", "Job")]


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def unknown_fields(instance, schema: dict, path: str = "") -> list[str]:
    """Fields the CRD's structural schema does not declare: the API server would prune them
    silently (jsonschema allows them, as the schemas rarely say additionalProperties: false)."""
    found = []
    if isinstance(instance, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            if properties is not None and key in properties:
                found += unknown_fields(value, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(f"{path}.{key}")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def keda_errors(doc: dict) -> list[str]:
    schema = json.loads(KEDA_SCHEMAS[doc["kind"]].read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    # metadata is the API server's ObjectMeta: the CRD leaves it open
    return errors + [f"{f}: unknown field" for f in unknown_fields(doc, schema) if not f.startswith(".metadata")]


def flask_routes() -> set[str]:
    from flask import Flask

    from search_service.api import register_blueprints

    app = Flask("routes")
    register_blueprints(app)
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}
