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
    body = {
        "status": "ready" if database else "unavailable",
        "database": database,
        "embedder": svc.names.embedder,
        "rerankers": sorted(svc.rerankers.rerankers),
    }
    return jsonify(body), 200 if database else 503
