"""gunicorn settings for library-svc (see chassis.gunicorn_config).

Each worker opens its own database engine after the fork (in create_app), so no
connection is ever shared between processes; the pool is sized to GUNICORN_THREADS.
"""

from chassis.gunicorn_config import gunicorn_settings
from library_svc.settings import LibrarySettings

globals().update(
    gunicorn_settings(
        LibrarySettings, app="library_svc.app:create_app()", port=8083, metrics_port=9083
    )
)
