"""Request ids and the access log.

A request id comes in as ``X-Request-ID`` (from the gateway, or the client) or is made
here; it is bound to every log line of the request, returned in the response header and
sent on by :mod:`chassis.outgoing`. The access-log line is written in ``after_request``
so it carries the request's trace and span ids.
"""

from __future__ import annotations

import re
import uuid

import structlog
from flask import Flask, Response, g, request

from chassis.logs import direct_logger
from chassis.metrics import route_label

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
QUIET_ROUTES = frozenset({"/healthz", "/readyz"})

ACCESS_LOGGER = "chassis.access"


def new_request_id() -> str:
    return uuid.uuid4().hex


def incoming_request_id() -> str:
    candidate = request.headers.get(REQUEST_ID_HEADER, "")
    return candidate if _VALID_REQUEST_ID.match(candidate) else new_request_id()


def current_request_id() -> str | None:
    from flask import has_request_context

    return g.get("request_id") if has_request_context() else None


def install_request_context(app: Flask) -> None:
    @app.before_request
    def _bind_request_id() -> None:
        g.request_id = incoming_request_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    def _access_log(response: Response) -> Response:
        response.headers.setdefault(REQUEST_ID_HEADER, g.get("request_id", ""))
        route = route_label()
        duration = g.get("chassis_duration")
        if route not in QUIET_ROUTES or response.status_code >= 400:
            direct_logger(ACCESS_LOGGER).info(
                "request",
                method=request.method,
                route=route,
                path=request.path,
                status=response.status_code,
                duration_ms=round(duration * 1000, 2) if duration is not None else None,
                bytes_in=request.content_length,
                bytes_out=response.content_length,
            )
        return response

    @app.teardown_request
    def _unbind(_: BaseException | None) -> None:
        structlog.contextvars.clear_contextvars()
