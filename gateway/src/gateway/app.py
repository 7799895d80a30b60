"""gateway application factory."""

from __future__ import annotations

from flask import Flask

from chassis.app import create_service_app
from chassis.outgoing import ServiceClient
from chassis.settings import load_settings
from gateway.api import blueprint
from gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings | None = None) -> Flask:
    settings = settings or load_settings(GatewaySettings)
    app = create_service_app(settings, __name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["upstreams"] = {
        "upload": ServiceClient(
            "upload",
            settings.upload_svc_url,
            connect_timeout=settings.upstream_connect_timeout_seconds,
            read_timeout=settings.upload_read_timeout_seconds,
        ),
        "ai": ServiceClient(
            "ai",
            settings.ai_svc_url,
            connect_timeout=settings.upstream_connect_timeout_seconds,
            read_timeout=settings.ai_read_timeout_seconds,
        ),
    }
    app.register_blueprint(blueprint)
    return app
