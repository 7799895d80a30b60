"""Requests gunicorn refuses before the app sees them, answered in the error envelope.

A request line over ``limit_request_line`` (a long query string), headers over
``limit_request_fields``/``limit_request_field_size``, or a malformed request never
reach Flask: gunicorn writes its own HTML page. A client that branches on
``error.code`` would meet the one answer it cannot parse, so each worker replaces
gunicorn's writer with one that sends the same JSON envelope, status and reason as
every other error. gunicorn has no hook for this; the writer is the function its worker
calls by module attribute, and the test of a long query string fails if that changes.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

from chassis.errors import CODES_BY_STATUS
from chassis.requests_context import REQUEST_ID_HEADER, new_request_id

PARSE_CODES: dict[int, str] = {
    **CODES_BY_STATUS,
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
    501: "not_implemented",
}

PARSE_MESSAGES: dict[int, str] = {
    400: "The request is not valid HTTP.",
    414: "The request line is too long: shorten the query string.",
    431: "The request headers are too large or too many.",
}


def json_error_reply(status: int, reason: str, message: str) -> bytes:
    """The raw HTTP reply for a request gunicorn refused; the connection is closed after it."""
    request_id = new_request_id()
    code = PARSE_CODES.get(status, "http_error")
    body = json.dumps(
        {
            "error": {
                "code": code,
                "message": PARSE_MESSAGES.get(status) or message or reason,
                "request_id": request_id,
            }
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"{REQUEST_ID_HEADER}: {request_id}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, json_error_reply(status_int, reason, mesg))


def install_json_parse_errors() -> None:
    """Called in each worker after fork (the master never answers requests)."""
    util.write_error = _write_json_error
