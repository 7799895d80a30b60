"""ai-svc application factory."""

from __future__ import annotations

import structlog
from flask import Flask

from ai_svc.api import blueprint
from ai_svc.ideas import IdeaService
from ai_svc.presets import load_catalogue
from ai_svc.providers.local import LocalProvider
from ai_svc.settings import AiSettings
from chassis.app import create_service_app
from chassis.outgoing import ServiceClient
from chassis.settings import load_settings

log = structlog.get_logger(__name__)


def create_app(settings: AiSettings | None = None) -> Flask:
    settings = settings or load_settings(AiSettings)
    app = create_service_app(settings, __name__)
    catalogue = load_catalogue(settings.presets_file)
    uploads = ServiceClient(
        "upload",
        settings.upload_svc_url,
        connect_timeout=settings.upload_connect_timeout_seconds,
        read_timeout=settings.upload_read_timeout_seconds,
    )
    provider = LocalProvider()
    if settings.gemini_api_key is None:
        log.info("provider_selected", provider="local", reason="GEMINI_API_KEY is not set")
    app.extensions["catalogue"] = catalogue
    app.extensions["ideas"] = IdeaService(uploads, provider, catalogue, settings.preview_long_side)
    app.register_blueprint(blueprint)
    return app
