"""Streaming reverse proxy from the gateway to one service.

Bodies stream both ways in chunks: an upload is never held whole in the gateway's
memory. Hop-by-hop headers stay on their hop; the request id and ``traceparent`` go on
(the latter injected by the requests instrumentation). An upstream 5xx that is not
already the JSON error envelope becomes 502 ``bad_gateway``, so a client always gets
the documented shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Response, request

from chassis.errors import ApiError, error_response
from chassis.outgoing import ServiceClient

CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
NOT_FORWARDED_DOWN = frozenset({"x-request-id", "traceparent", "tracestate", "cookie"})


class StreamedBody:
    """The incoming body as an iterable of chunks with a known length, counted as it goes."""

    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        stream = request.stream
        while chunk := stream.read(CHUNK):
            sent += len(chunk)
            if sent > self.limit:
                raise ApiError(413, "payload_too_large", "The request body is too large.")
            yield chunk


def forwarded_headers() -> dict[str, str]:
    return {
        name: value
        for name, value in request.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() not in NOT_FORWARDED_DOWN
    }


def body_for_upstream(limit: int) -> StreamedBody | None:
    length = request.content_length
    if length is None or length == 0:
        return None
    if length > limit:
        raise ApiError(413, "payload_too_large", "The request body is too large.")
    return StreamedBody(length, limit)


def forward(
    client: ServiceClient,
    path: str,
    *,
    read_timeout: float,
    body_limit: int,
) -> Response:
    upstream = client.request(
        request.method,
        path,
        params=request.args,
        data=body_for_upstream(body_limit),
        headers=forwarded_headers(),
        stream=True,
        timeout=(client.timeout[0], read_timeout),
    )
    if upstream.status_code >= 500:
        return upstream_failure(upstream.status_code, upstream.content)
    headers = [
        (name, value)
        for name, value in upstream.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() != "x-request-id"
    ]
    response = Response(
        upstream.raw.stream(CHUNK, decode_content=False),
        status=upstream.status_code,
        headers=headers,
        direct_passthrough=True,
    )
    if "Content-Length" in upstream.headers:
        response.headers["Content-Length"] = upstream.headers["Content-Length"]
    response.call_on_close(upstream.close)
    return response


def upstream_failure(status: int, body: bytes) -> Response:
    """Pass a service's own JSON error on; replace anything else with a clean 502."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return error_response(502, "bad_gateway", "A backing service failed.")
    return error_response(status, code, message)
