"""gunicorn settings for ai-svc (see chassis.gunicorn_config)."""

from ai_svc.settings import AiSettings
from chassis.gunicorn_config import gunicorn_settings

globals().update(
    gunicorn_settings(AiSettings, app="ai_svc.app:create_app()", port=8082, metrics_port=9082)
)
