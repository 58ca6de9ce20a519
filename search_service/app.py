"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask

from search_service.api import register_blueprints
from search_service.api.errors import register_error_handlers
from search_service.services import Services, build_services
from search_service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """Build the app; models load here, once per process, before any request is served.

    `services` lets tests share already-loaded models between apps.
    """
    if services is None:
        services = build_services(settings or Settings.from_env())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_upload_bytes
    app.json.sort_keys = False
    app.extensions["search_service"] = services
    register_error_handlers(app)
    register_blueprints(app)
    return app
