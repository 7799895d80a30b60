"""The one entry point a service builds its Flask app with.

``create_service_app(settings, __name__)`` returns a Flask app that already has the
whole chassis contract: request ids, the access log inside the trace, RED metrics,
the JSON error envelope, ``/healthz`` and ``/readyz``, tracing and Sentry. The service
adds its blueprints and readiness checks and nothing else.
"""

from __future__ import annotations

import threading

from flask import Flask

from chassis.errors import install_error_handlers
from chassis.health import blueprint as health_blueprint
from chassis.logs import configure_logging
from chassis.metrics import SERVICE_INFO, install_red_metrics, render_metrics
from chassis.requests_context import QUIET_ROUTES, install_request_context
from chassis.sentry import init_sentry
from chassis.server_spans import install_server_spans
from chassis.settings import ServiceSettings
from chassis.tracing import setup_tracing

_process_lock = threading.Lock()
_process_ready = False


def init_process(settings: ServiceSettings) -> None:
    """Process-wide setup: logs, traces, Sentry. Runs once per (forked) worker process."""
    global _process_ready  # noqa: PLW0603
    with _process_lock:
        if _process_ready:
            return
        configure_logging(settings.service_name, settings.log_level, settings.log_format)
        if not settings.otel_sdk_disabled:
            setup_tracing(settings.service_name, settings.release, settings.environment)
        init_sentry(settings)
        SERVICE_INFO.labels(settings.release, settings.environment).set(1)
        _process_ready = True


def create_service_app(settings: ServiceSettings, import_name: str) -> Flask:
    init_process(settings)
    app = Flask(import_name)
    app.config["SETTINGS"] = settings
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    install_request_context(app)
    if settings.metrics_enabled:
        install_red_metrics(app)
    install_error_handlers(app)
    app.register_blueprint(health_blueprint)
    if not settings.otel_sdk_disabled:
        install_server_spans(app, excluded_paths=QUIET_ROUTES)
    return app


def create_metrics_app() -> Flask:
    """A tiny app serving ``/metrics`` alone: for the metrics port, never the public one."""
    app = Flask("chassis.metrics")
    app.add_url_rule("/metrics", "metrics", render_metrics)
    return app
