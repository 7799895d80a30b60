"""upload-svc application factory."""

from __future__ import annotations

from flask import Flask

from chassis.app import create_service_app
from chassis.health import add_readiness_check
from chassis.settings import load_settings
from upload_svc.api import blueprint
from upload_svc.settings import UploadSettings
from upload_svc.storage.local import LocalStorage


def create_app(settings: UploadSettings | None = None) -> Flask:
    settings = settings or load_settings(UploadSettings)
    app = create_service_app(settings, __name__)
    storage = LocalStorage(settings.storage_dir)
    app.extensions["storage"] = storage
    app.register_blueprint(blueprint)
    add_readiness_check(app, "storage", storage.check)
    return app
