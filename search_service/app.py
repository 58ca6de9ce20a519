"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask

from search_service.api import register_blueprints
from search_service.api.errors import register_error_handlers
from search_service.api.json_provider import StrictJSONProvider
from search_service.services import Services, build_services
from search_service.settings import Settings

log = logging.getLogger(__name__)


def install_hooks(app: Flask, services: Services) -> None:
    """Per-request hooks, in order: request id + metrics, CORS preflight, auth, rate limit."""
    from search_service import auth, limits, observability
    from search_service.api import cors

    observability.init_app(app, services)
    cors.init_app(app)
    auth.init_app(app)
    limits.init_app(app, services.settings)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """Build the app; models load here, once per process, before any request is served.

    `services` lets tests share already-loaded models between apps.
    """
    if services is None:
        services = build_services(settings or Settings.from_env())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_upload_bytes
    app.json = StrictJSONProvider(app)  # responses are strict JSON: no NaN/Infinity
    app.extensions["search_service"] = services
    register_error_handlers(app)
    install_hooks(app, services)
    register_blueprints(app)
    return app
