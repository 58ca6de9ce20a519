from flask import Blueprint, jsonify

from search_service.api import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    # auth_required lets a client (the playground) ask for a key before its first API call
    return {"status": "ok", "auth_required": services().settings.auth_enabled}


@bp.get("/readyz")
def readyz():
    svc = services()
    database = svc.database.ping()
    workers = svc.ingest_workers.state() if svc.ingest_workers is not None else None
    ready = database and (workers is None or workers["alive"] == workers["configured"])
    body = {
        "status": "ready" if ready else "unavailable",
        "database": database,
        "embedder": svc.names.embedder,
        "rerankers": sorted(svc.rerankers.rerankers),
        # serve --ingest-workers N: threads configured, alive now, and restarted after dying
        "ingest_workers": workers,
    }
    return jsonify(body), 200 if ready else 503
