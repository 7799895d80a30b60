"""Calls from one service to another over HTTP.

A pooled ``requests`` session per upstream, with explicit connect and read timeouts,
the request id sent on, and W3C ``traceparent`` injected by the OpenTelemetry requests
instrumentation. Network failures become the error envelope's codes, so a caller never
turns a dead upstream into a bare 500: refused or unreachable is 503
``upstream_unavailable``, too slow is 504 ``upstream_timeout``.
"""

from __future__ import annotations

from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from chassis.errors import ApiError
from chassis.requests_context import REQUEST_ID_HEADER, current_request_id

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def dropped_before_answer(error: requests.ConnectionError) -> bool:
    """The upstream closed a pooled keep-alive connection as the request went out.

    A server closes an idle keep-alive connection when its own timer runs out; a request
    sent in that instant meets a closed socket. An idempotent request without a body is
    safe to send once more on a fresh connection.
    """
    return bool(error.args) and isinstance(error.args[0], urllib3.exceptions.ProtocolError)


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
        self.session = requests.Session()
        # One retry on a refused or reset *connection* only: it covers a pooled keep-alive
        # socket the upstream closed meanwhile; nothing that reached the upstream repeats.
        # read=False (not 0) re-raises a read error as itself: with 0, a GET that timed
        # out came back as "max retries exceeded", a ConnectionError, and so as 503.
        retry = Retry(total=1, connect=1, read=False, status=0, other=0, redirect=0)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: tuple[float, float] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        sent_headers = dict(headers or {})
        request_id = current_request_id()
        if request_id:
            sent_headers.setdefault(REQUEST_ID_HEADER, request_id)
        retry_dropped = method.upper() in IDEMPOTENT_METHODS and kwargs.get("data") is None
        while True:
            try:
                return self.session.request(
                    method,
                    f"{self.base_url}{path}",
                    headers=sent_headers,
                    timeout=timeout or self.timeout,
                    allow_redirects=False,
                    **kwargs,
                )
            except requests.Timeout as error:
                raise ApiError(
                    504, "upstream_timeout", f"The {self.name} service did not answer in time."
                ) from error
            except requests.ConnectionError as error:
                if retry_dropped and dropped_before_answer(error):
                    retry_dropped = False
                    continue
                raise ApiError(
                    503, "upstream_unavailable", f"The {self.name} service is unavailable."
                ) from error

    def close(self) -> None:
        self.session.close()
