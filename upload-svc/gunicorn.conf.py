"""gunicorn settings for upload-svc (see chassis.gunicorn_config)."""

from chassis.gunicorn_config import gunicorn_settings
from upload_svc.settings import UploadSettings

globals().update(
    gunicorn_settings(
        UploadSettings, app="upload_svc.app:create_app()", port=8081, metrics_port=9081
    )
)
