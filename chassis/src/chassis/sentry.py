"""Sentry error reporting with nothing private in the events.

Events carry the service tag, release and environment, and the OpenTelemetry trace id
of the request, so an alert leads straight to the trace and the log lines. Request
bodies (image bytes) are never attached, and headers, cookies and any secret-looking
value are scrubbed by the same rules as the logs.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from opentelemetry import trace
from sentry_sdk.integrations.flask import FlaskIntegration

from chassis.redaction import REDACTED, redact
from chassis.settings import ServiceSettings

SCRUBBED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-goog-api-key"}
)


def scrub_event(event: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: REDACTED if name.lower() in SCRUBBED_HEADERS else value
                for name, value in headers.items()
            }
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        trace_id = format(context.trace_id, "032x")
        event.setdefault("tags", {})["trace_id"] = trace_id
        event.setdefault("contexts", {}).setdefault("trace", {}).update(
            {"trace_id": trace_id, "span_id": format(context.span_id, "016x")}
        )
    return redact(event)


def init_sentry(settings: ServiceSettings, **options: Any) -> bool:
    """Start Sentry when a DSN is configured; returns whether it is on."""
    if settings.sentry_dsn is None:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        release=settings.release,
        environment=settings.environment,
        server_name=settings.service_name,
        data_collection={
            "user_info": False,
            "http_bodies": [],
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist", "terms": sorted(SCRUBBED_HEADERS)}},
            "url_query_params": {"mode": "denylist", "terms": ["key", "api_key", "token"]},
            "stack_frame_variables": False,
        },
        traces_sample_rate=settings.sentry_traces_sample_rate,
        before_send=scrub_event,
        integrations=[FlaskIntegration()],
        **options,
    )
    sentry_sdk.set_tag("service", settings.service_name)
    return True
