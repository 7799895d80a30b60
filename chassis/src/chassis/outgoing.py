"""Calls from one service to another over HTTP.

A pooled urllib3 connection pool per upstream, with explicit connect and read timeouts,
the request id sent on, and W3C ``traceparent`` injected with a client span around
each call. Network failures become the error envelope's codes, so a caller never turns
a dead upstream into a bare 500: refused or unreachable is 503 ``upstream_unavailable``,
too slow is 504 ``upstream_timeout``.

Why urllib3 and not a ``requests.Session``: the session's per-call machinery (merging
settings, preparing the request, hooks, cookies, redirect handling, its OpenTelemetry
wrapper) was most of the cost of a call that moves a kilobyte between two pods. Profiled
under load, a proxied ``GET /v1/presets`` spent 26 % of the gateway's CPU in
``Session.request`` of which only 12 points were urllib3's own ``urlopen``. The answer
is still a ``requests.Response`` (its ``raw`` the urllib3 response, unread when
``stream=True``), so every caller reads it as before.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from opentelemetry import propagate, trace
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from chassis.errors import ApiError
from chassis.requests_context import REQUEST_ID_HEADER, current_request_id

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# One retry on a refused or reset *connection* only: it covers a pooled keep-alive
# socket the upstream closed meanwhile; nothing that reached the upstream repeats.
# read=False (not 0) re-raises a read error as itself: with 0, a GET that timed out
# came back as "max retries exceeded", a connection error, and so as 503.
CONNECT_RETRY = Retry(total=1, connect=1, read=False, status=0, other=0, redirect=0)
Body = bytes | Iterable[bytes] | None

_tracer = trace.get_tracer(__name__)


def as_response(raw: urllib3.BaseHTTPResponse, url: str) -> requests.Response:
    """The urllib3 answer in the ``requests.Response`` shape callers read."""
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.reason = raw.reason or ""
    response.raw = raw
    response.url = url
    return response


class ServiceClient:
    """A pooled HTTP client for one upstream service."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        connect_timeout: float = 1.0,
        read_timeout: float = 30.0,
        pool_size: int = 32,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self._prefix = urllib3.util.parse_url(self.base_url).path or ""
        self.pool = urllib3.connection_from_url(self.base_url, maxsize=pool_size, block=False)
        self._timeouts: dict[tuple[float, float], urllib3.Timeout] = {}

    def _timeout(self, timeout: tuple[float, float]) -> urllib3.Timeout:
        found = self._timeouts.get(timeout)
        if found is None:
            found = urllib3.Timeout(connect=timeout[0], read=timeout[1])
            if len(self._timeouts) < 64:  # a handful of fixed pairs; deadlines vary
                self._timeouts[timeout] = found
        return found

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: tuple[float, float] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        data: Body = None,
        json: Any = None,
        stream: bool = False,
    ) -> requests.Response:
        """One call; with ``stream=False`` the body is read (and the connection pooled)."""
        method = method.upper()
        sent_headers = dict(headers or {})
        request_id = current_request_id()
        if request_id:
            sent_headers.setdefault(REQUEST_ID_HEADER, request_id)
        if json is not None and data is None:
            data = jsonlib.dumps(json, allow_nan=False).encode()
            sent_headers.setdefault("Content-Type", "application/json")
        if data is not None and hasattr(data, "__len__"):
            sent_headers.setdefault("Content-Length", str(len(data)))  # type: ignore[arg-type]
        url = f"{self._prefix}{path}"
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params, doseq=True)}"
        retry_dropped = method in IDEMPOTENT_METHODS and data is None
        with _tracer.start_as_current_span(
            method, kind=trace.SpanKind.CLIENT, record_exception=False
        ) as span:
            if span.is_recording():
                span.set_attribute("http.request.method", method)
                span.set_attribute("url.full", f"{self.base_url}{path}")
                span.set_attribute("server.address", self.pool.host)
            propagate.inject(sent_headers)
            response = self._send(
                method,
                url=url,
                data=data,
                headers=sent_headers,
                timeout=timeout,
                retry_dropped=retry_dropped,
            )
            if span.is_recording():
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 500:
                    span.set_status(trace.StatusCode.ERROR)
            if not stream:
                self._read_whole(response)
            return response

    def _send(
        self,
        method: str,
        *,
        url: str,
        data: Body,
        headers: dict[str, str],
        timeout: tuple[float, float] | None,
        retry_dropped: bool,
    ) -> requests.Response:
        while True:
            try:
                raw = self.pool.urlopen(
                    method,
                    url,
                    body=data,
                    headers=headers,
                    retries=CONNECT_RETRY,
                    redirect=False,
                    assert_same_host=False,
                    timeout=self._timeout(timeout or self.timeout),
                    preload_content=False,
                    decode_content=False,
                    chunked=data is not None and "Content-Length" not in headers,
                )
                return as_response(raw, f"{self.base_url}{url}")
            except ProtocolError as error:
                # The upstream closed a pooled keep-alive connection as the request went
                # out (its own idle timer ran out): an idempotent request without a body
                # is safe to send once more, on a fresh connection.
                if retry_dropped:
                    retry_dropped = False
                    continue
                raise self._unavailable() from error
            except (ReadTimeoutError, ConnectTimeoutError) as error:
                if isinstance(error, NewConnectionError):
                    raise self._unavailable() from error
                raise self._too_slow() from error
            except MaxRetryError as error:
                reason = error.reason
                if isinstance(reason, ConnectTimeoutError) and not isinstance(
                    reason, NewConnectionError
                ):
                    raise self._too_slow() from error
                raise self._unavailable() from error
            except (HTTPError, OSError) as error:
                raise self._unavailable() from error

    def _read_whole(self, response: requests.Response) -> None:
        """Read a non-streamed answer now, as a session does; a failure is answered."""
        try:
            _ = response.content
        except requests.Timeout as error:
            raise self._too_slow() from error
        except requests.ConnectionError as error:
            raise self._unavailable() from error

    def _unavailable(self) -> ApiError:
        return ApiError(503, "upstream_unavailable", f"The {self.name} service is unavailable.")

    def _too_slow(self) -> ApiError:
        return ApiError(504, "upstream_timeout", f"The {self.name} service did not answer in time.")

    def close(self) -> None:
        self.pool.close()
