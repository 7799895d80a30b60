"""upload-svc application factory."""

from __future__ import annotations

import warnings

from flask import Flask, Response
from PIL import Image

from chassis.app import create_service_app
from chassis.errors import error_response
from chassis.health import add_readiness_check
from chassis.settings import load_settings
from upload_svc.api import blueprint, storage_error
from upload_svc.intake import ensure_heif_support
from upload_svc.retention import RetentionSweeper
from upload_svc.settings import UploadSettings
from upload_svc.storage import Storage, StorageUnavailable, build_storage
from upload_svc.uploads import Uploads


def create_app(settings: UploadSettings | None = None, storage: Storage | None = None) -> Flask:
    settings = settings or load_settings(UploadSettings)
    app = create_service_app(settings, __name__)
    # Pixel limits are enforced by intake before decoding, with a 422; Pillow's own
    # warning for large images would only add noise to the logs.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    ensure_heif_support()
    store = storage or build_storage(settings)
    app.extensions["storage"] = store
    service = Uploads(store, settings)
    app.extensions["uploads"] = service
    if settings.storage_backend == "local":
        # S3 expires anonymous uploads by its lifecycle rule; a directory needs a sweeper.
        app.extensions["retention"] = RetentionSweeper(
            service, settings.storage_dir, settings.retention_sweep_interval_seconds
        ).start()
    app.register_blueprint(blueprint)

    @app.errorhandler(StorageUnavailable)
    def _storage_unavailable(error: StorageUnavailable) -> Response:
        api_error = storage_error(error)
        return error_response(
            api_error.status, api_error.code, api_error.message, headers=api_error.headers
        )

    add_readiness_check(app, "storage", store.check)
    return app
