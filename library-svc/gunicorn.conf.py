"""gunicorn settings for library-svc (see chassis.gunicorn_config)."""

from chassis.gunicorn_config import gunicorn_settings
from library_svc.settings import LibrarySettings

globals().update(
    gunicorn_settings(
        LibrarySettings, app="library_svc.app:create_app()", port=8083, metrics_port=9083
    )
)
