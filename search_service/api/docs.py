"""`GET /openapi.json` (built from the pydantic models) and `GET /docs` (a page that renders it)."""

from functools import cache
from pathlib import Path

from flask import Blueprint, Response, current_app

bp = Blueprint("docs", __name__)
STATIC = Path(__file__).resolve().parents[1] / "static"


@cache
def static_page(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@bp.get("/openapi.json")
def openapi():
    from search_service.api.openapi import build_spec

    return build_spec(current_app)


@bp.get("/docs")
def docs():
    """No CDN: the page is one self-contained HTML file (the machines may have no internet)."""
    return Response(static_page("docs.html"), mimetype="text/html")
