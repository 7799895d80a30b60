"""gunicorn settings for the gateway (see chassis.gunicorn_config)."""

from chassis.gunicorn_config import gunicorn_settings
from gateway.settings import GatewaySettings

globals().update(
    gunicorn_settings(GatewaySettings, app="gateway.app:create_app()", port=8080, metrics_port=9080)
)
