"""What browsers get: CORS from an exact allow-list, and the security headers on everything.

CORS (flask-cors) answers preflights itself, before any service is touched and outside
the rate limits, and only for origins in ``CORS_ALLOWED_ORIGINS`` (exact matches; ``*``
only without credentials, checked at start). Other origins get no CORS headers at all,
are counted in ``gateway_cors_rejected_total``, and cannot make state-changing calls
(403 ``origin_not_allowed``): a cross-site form could otherwise post a multipart snap,
which a browser sends without a preflight, on a visitor's quota. Requests without an
``Origin`` (the mobile app, curl) are not affected.

Every response carries nosniff, frame denial and ``Referrer-Policy: no-referrer``; a
Content-Security-Policy that forbids everything for API answers and allows the docs
page its own scripts; and HSTS when the request came over TLS (as ProxyFix reports it
through the trusted proxies).
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from flask_cors import CORS

from chassis.errors import ApiError
from gateway.docs_page import DOCS_ENDPOINTS
from gateway.metrics import CORS_REJECTED
from gateway.settings import GatewaySettings

METHODS = ("GET", "HEAD", "POST", "DELETE", "OPTIONS")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",
    "X-Request-ID",
    "traceparent",
    "tracestate",
)
EXPOSED_HEADERS = (
    "X-Request-ID",
    "WWW-Authenticate",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Idempotency-Replayed",
    "Location",
    "ETag",
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class OriginPolicy:
    def __init__(self, origins: list[str]) -> None:
        self.any = "*" in origins
        self.allowed = frozenset(origin.lower() for origin in origins if origin != "*")

    def allows(self, origin: str) -> bool:
        if self.any or origin.lower() in self.allowed:
            return True
        # The gateway's own pages (the docs) call it from its own origin.
        return origin.lower() == f"{request.scheme}://{request.host}".lower()


def install_cors(app: Flask, settings: GatewaySettings) -> None:
    policy = OriginPolicy(settings.cors_allowed_origins)

    @app.before_request
    def _refuse_foreign_writes() -> None:
        origin = request.headers.get("Origin")
        if origin and request.method not in SAFE_METHODS and not policy.allows(origin):
            raise ApiError(403, "origin_not_allowed", "This origin may not call the API.")

    # Registered before flask-cors, so it runs after it (after-request runs in reverse).
    @app.after_request
    def _count_and_vary(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and not policy.allows(origin):
            CORS_REJECTED.inc()
        response.vary.add("Origin")
        return response

    if not settings.cors_allowed_origins:
        return
    CORS(
        app,
        resources={r"/v1/.*": {}, r"/openapi\.json": {}},
        origins=settings.cors_allowed_origins,
        methods=list(METHODS),
        allow_headers=[*ALLOWED_REQUEST_HEADERS, settings.api_key_header],
        expose_headers=list(EXPOSED_HEADERS),
        supports_credentials=settings.cors_allow_credentials,
        max_age=settings.cors_max_age_seconds,
        send_wildcard=False,
        always_send=False,
        vary_header=True,
        automatic_options=True,
    )


def install_security_headers(app: Flask, settings: GatewaySettings) -> None:
    hsts = f"max-age={settings.hsts_max_age_seconds}; includeSubDomains"

    @app.after_request
    def _harden(response: Response) -> Response:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        # The web app's pages set their own policy (it names their import map's hash).
        headers["Content-Security-Policy"] = g.get("content_security_policy") or (
            DOCS_CSP if request.endpoint in DOCS_ENDPOINTS else API_CSP
        )
        if response.status_code >= 400 and "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"
        if request.is_secure and settings.hsts_max_age_seconds > 0:
            headers["Strict-Transport-Security"] = hsts
        return response
