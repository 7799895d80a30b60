"""Streaming reverse proxy from the gateway to one service.

Request bodies stream through in 64 KiB chunks, never whole in memory: with a
Content-Length they are sent on with the same length, chunked bodies are sent on
chunked; either way the route's body limit is enforced at the edge (413) before and
while the bytes flow. Responses stream back the same way, except small answers to POSTs,
which are read whole so that an idempotent replay can keep them.

Hop-by-hop headers (and any header the client's ``Connection`` names) stay on their hop,
and so do credentials, cookies and ``X-Forwarded-*`` that a client wrote itself. The
validated request id, ``traceparent`` (rewritten by the OpenTelemetry instrumentation
when it is on) and the client address as the gateway resolved it go on. Every call to
every service carries the caller the gateway verified (``X-IdeaSnap-User`` /
``X-IdeaSnap-Tier``), set in :func:`call`; a client's own copies never pass.

Failures get a defined answer, never a hang: connection refused is 503
``upstream_unavailable``, a connect or read timeout is 504 ``upstream_timeout`` (both
from :class:`chassis.outgoing.ServiceClient`), and an upstream 5xx keeps its status and
code when it is already the JSON error shape, or becomes 502 ``bad_gateway``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import requests
import structlog
import urllib3
from flask import Response, request

from chassis.errors import ApiError
from chassis.outgoing import ServiceClient
from gateway.auth import IDENTITY_HEADER_NAMES, identity_headers
from gateway.metrics import UPSTREAM_ERRORS

log = structlog.get_logger(__name__)

CHUNK = 64 * 1024
ERROR_BODY_LIMIT = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_SENT_UP = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "cookie",
        "authorization",
        "x-request-id",
        "idempotency-key",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
        *IDENTITY_HEADER_NAMES,
    }
)
NOT_SENT_DOWN = frozenset({"content-length", "x-request-id", "server", "date", "set-cookie"})


@dataclass(frozen=True)
class Upstream:
    """A backing service, by the name its errors are counted under."""

    name: str
    client: ServiceClient


def connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return named


def headers_for_upstream(drop: frozenset[str] = frozenset()) -> dict[str, str]:
    incoming = list(request.headers.items())
    skipped = HOP_BY_HOP | NOT_SENT_UP | drop | connection_named(incoming)
    headers = {name: value for name, value in incoming if name.lower() not in skipped}
    # Without this, requests would ask for gzip on the client's behalf and the raw
    # compressed bytes would reach a client that never said it could read them.
    headers.setdefault("Accept-Encoding", "identity")
    headers["X-Forwarded-For"] = request.remote_addr or ""
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


def headers_for_client(upstream: requests.Response) -> list[tuple[str, str]]:
    items = list(upstream.headers.items())
    skipped = HOP_BY_HOP | NOT_SENT_DOWN | connection_named(items)
    return [
        (name, value)
        for name, value in items
        if name.lower() not in skipped and not name.lower().startswith("access-control-")
    ]


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"The request body is larger than the limit of {limit} bytes."
    )


def body_chunks(limit: int, length: int | None = None) -> Iterator[bytes]:
    """The incoming body in chunks, counted as they go: 413 the moment it passes ``limit``.

    A body that ends before its declared ``length`` (the client went away) is an error
    here: passing the short body on would leave the service waiting for the rest.
    """
    sent = 0
    stream = request.stream
    while chunk := stream.read(CHUNK):
        sent += len(chunk)
        if sent > limit:
            raise too_large(limit)
        yield chunk
    if length is not None and sent < length:
        raise ApiError(400, "incomplete_body", "The request body ended before its declared length.")


class SizedBody:
    """A body with a declared length: requests sends it on with the same Content-Length."""

    def __init__(self, limit: int, length: int) -> None:
        self.limit = limit
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        return body_chunks(self.limit, self.length)


class ChunkedBody:
    """A body of unknown length: without ``__len__``, requests sends it on chunked."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __iter__(self) -> Iterator[bytes]:
        return body_chunks(self.limit)


def body_for_upstream(limit: int) -> SizedBody | ChunkedBody | None:
    """The request body to send on, or None; 413 at once when the declared length is over."""
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if length is not None and length > limit:
        raise too_large(limit)
    # Werkzeug enforces the same limit on the stream itself, chunked bodies included.
    request.max_content_length = limit
    if length:
        return SizedBody(limit, length)
    if chunked:
        return ChunkedBody(limit)
    return None


def call(upstream: Upstream, method: str, path: str, **kwargs: object) -> requests.Response:
    """One upstream call, as the verified caller; a refused connection or a timeout is answered."""
    given = kwargs.get("headers") or {}
    headers = {
        name: value
        for name, value in given.items()  # type: ignore[attr-defined]
        if name.lower() not in IDENTITY_HEADER_NAMES
    }
    headers.update(identity_headers())
    kwargs["headers"] = headers
    try:
        return upstream.client.request(method, path, **kwargs)  # type: ignore[arg-type]
    except ApiError as error:
        UPSTREAM_ERRORS.labels(upstream.name, error.code).inc()
        log.warning("upstream_failed", upstream=upstream.name, code=error.code, path=path)
        raise


def upstream_error(upstream: Upstream, response: requests.Response) -> ApiError:
    """A 5xx from a service: its own JSON error kept, anything else a clean 502; counted."""
    try:
        body = response.raw.read(ERROR_BODY_LIMIT, decode_content=True)
    except (urllib3.exceptions.HTTPError, OSError):
        body = b""
    finally:
        response.close()
    details = None
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
        status = response.status_code
        if isinstance(error.get("details"), dict):
            details = error["details"]
    except (ValueError, KeyError, TypeError):
        code, message, status = "bad_gateway", "A backing service failed.", 502
    UPSTREAM_ERRORS.labels(upstream.name, code).inc()
    log.warning("upstream_error", upstream=upstream.name, status=response.status_code, code=code)
    headers = {}
    if status != 502 and response.headers.get("Retry-After"):
        headers["Retry-After"] = response.headers["Retry-After"]
    return ApiError(status, code, message, headers=headers, details=details)


def relay(upstream: Upstream, response: requests.Response) -> Iterator[bytes]:
    """Stream the upstream body; a break midway closes the client connection too."""
    try:
        yield from response.raw.stream(CHUNK, decode_content=False)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        UPSTREAM_ERRORS.labels(upstream.name, "stream_interrupted").inc()
        log.warning("upstream_stream_interrupted", upstream=upstream.name, error=str(error))
        raise


def read_bounded(
    upstream: Upstream, response: requests.Response, amount: int, *, decode: bool
) -> bytes:
    """Up to ``amount`` bytes of an upstream body; a timeout or a broken body is an error."""
    try:
        return response.raw.read(amount, decode_content=decode)
    except urllib3.exceptions.ReadTimeoutError as error:
        response.close()
        UPSTREAM_ERRORS.labels(upstream.name, "upstream_timeout").inc()
        raise ApiError(
            504, "upstream_timeout", f"The {upstream.name} service did not answer in time."
        ) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        response.close()
        UPSTREAM_ERRORS.labels(upstream.name, "bad_gateway").inc()
        raise ApiError(502, "bad_gateway", "A backing service failed.") from error


def read_answer(upstream: Upstream, response: requests.Response, limit: int) -> bytes:
    """A whole small answer, decoded; an oversized one is an error too."""
    try:
        body = read_bounded(upstream, response, limit + 1, decode=True)
    finally:
        response.close()
    if len(body) > limit:
        UPSTREAM_ERRORS.labels(upstream.name, "bad_gateway").inc()
        raise ApiError(502, "bad_gateway", "A backing service gave an unexpected answer.")
    return body


def forward(
    upstream: Upstream,
    path: str,
    *,
    read_timeout: float,
    body_limit: int | None = None,
    keep_small: int = 0,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """Send the current request to ``upstream`` at ``path`` and answer with its response.

    ``body_limit``: send the request body on, up to this size (None: send no body).
    ``keep_small``: read answers up to this size whole (for idempotent POSTs).
    ``extra_headers``: headers the route sends on deliberately (never the identity ones).
    """
    query = request.query_string.decode("latin-1")
    upstream_response = call(
        upstream,
        request.method,
        f"{path}?{query}" if query else path,
        data=None if body_limit is None else body_for_upstream(body_limit),
        headers={**headers_for_upstream(), **(extra_headers or {})},
        stream=True,
        timeout=(upstream.client.timeout[0], read_timeout),
    )
    if upstream_response.status_code >= 500:
        raise upstream_error(upstream, upstream_response)
    headers = headers_for_client(upstream_response)
    declared = upstream_response.headers.get("Content-Length", "")
    if keep_small and not (declared.isdigit() and int(declared) > keep_small):
        start = read_bounded(upstream, upstream_response, keep_small + 1, decode=False)
        if len(start) <= keep_small:
            upstream_response.close()
            return Response(start, status=upstream_response.status_code, headers=headers)
        return streamed(upstream, upstream_response, headers, first=start)
    return streamed(upstream, upstream_response, headers)


def streamed(
    upstream: Upstream,
    upstream_response: requests.Response,
    headers: list[tuple[str, str]],
    first: bytes = b"",
) -> Response:
    def body() -> Iterator[bytes]:
        if first:
            yield first
        yield from relay(upstream, upstream_response)

    response = Response(
        body(), status=upstream_response.status_code, headers=headers, direct_passthrough=True
    )
    declared = upstream_response.headers.get("Content-Length")
    if declared is not None:
        response.headers["Content-Length"] = declared
    response.call_on_close(upstream_response.close)
    return response
