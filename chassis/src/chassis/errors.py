"""One error shape for every service and every failure.

``{"error": {"code", "message", "request_id"}}`` with the right status. Codes are
stable snake_case names that clients branch on; messages are for humans. An unexpected
exception becomes a 500 that says only that it failed: the traceback goes to the logs
and Sentry (Flask's ``got_request_exception`` fires before our handler), never to the
client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

CODES_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

GENERIC_MESSAGES: dict[int, str] = {
    404: "The requested resource does not exist.",
    405: "This method is not allowed here.",
    413: "The request body is too large.",
    500: "The request failed. Quote the request id when reporting it.",
}


class ApiError(Exception):
    """An error with a status and a stable code, raised anywhere in request handling."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": g.get("request_id")}
    if details:
        error["details"] = dict(details)
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Response:
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(
            error.status, error.code, error.message, headers=error.headers, details=error.details
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = CODES_BY_STATUS.get(status, "http_error")
        message = GENERIC_MESSAGES.get(status) or error.description or code
        response = error_response(status, code, message)
        if status == 405 and error.get_headers():
            for name, value in error.get_headers():
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response
