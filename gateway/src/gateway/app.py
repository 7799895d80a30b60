"""gateway application factory: the chassis app plus the edge, wired in a deliberate order.

Flask runs before-request functions in the order they were added and after-request
functions in reverse. So, per request: the chassis (request id, timer), foreign-origin
writes refused, the caller (a Firebase ID token verified, or anonymous), rate limits and
quota of the caller's tier, then the API key check, then the view; on the
way out flask-limiter charges the quota, flask-cors adds its headers, then the limit
headers, the CORS counter, the security headers, and last the chassis' metrics and
access log.
"""

from __future__ import annotations

import structlog
from flask import Flask, g, request

from chassis.app import create_service_app
from chassis.health import add_readiness_check
from chassis.outgoing import ServiceClient
from chassis.settings import load_settings
from gateway.api import Edge, forget_person, register_public_api
from gateway.auth import Authenticator, build_verifier, install_authentication
from gateway.browsers import install_cors, install_security_headers
from gateway.docs_page import install_docs
from gateway.idempotency import build_idempotency
from gateway.identity import ApiKeys, Identity, trust_proxies
from gateway.limit_store import ResilientRedisStorage
from gateway.local_store import LocalIdempotencyStore, LocalState, private_state_path
from gateway.metrics import touch_series
from gateway.proxy import Upstream
from gateway.ratelimits import build_limiter, install_limit_responses
from gateway.settings import GatewaySettings
from gateway.tiers import load_tiers
from gateway.web import install_web

log = structlog.get_logger(__name__)

__all__ = ["create_app", "forget_person"]


def upstream(name: str, url: str, settings: GatewaySettings, read_timeout: float) -> Upstream:
    # The services are inside the cluster: no HTTP_PROXY applies (the client reads none).
    client = ServiceClient(
        name,
        url,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=read_timeout,
        pool_size=settings.upstream_pool_size,
    )
    return Upstream(name, client)


def create_app(settings: GatewaySettings | None = None) -> Flask:
    settings = settings or load_settings(GatewaySettings)
    app = create_service_app(settings, __name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    touch_series()
    trust_proxies(app, settings.trusted_proxy_hops)

    identity = Identity(
        ApiKeys(settings.api_keys_file), settings.api_key_header, settings.api_keys_required
    )
    tiers = load_tiers(settings.tiers_file).with_anonymous(
        rate_limit=settings.rate_limit_default,
        ai_rate_limit=settings.rate_limit_ai,
        ai_daily_quota=settings.ai_daily_quota,
    )
    local_path = settings.local_state_path or private_state_path()
    local = None if settings.redis_url else LocalIdempotencyStore(LocalState(local_path))
    app.extensions["gateway"] = Edge(
        settings=settings,
        uploads=upstream(
            "upload", settings.upload_svc_url, settings, settings.upload_read_timeout_seconds
        ),
        ai=upstream("ai", settings.ai_svc_url, settings, settings.ai_read_timeout_seconds),
        library=upstream(
            "library", settings.library_svc_url, settings, settings.library_read_timeout_seconds
        ),
        idempotency=build_idempotency(
            settings.redis_url,
            settings.redis_timeout_seconds,
            ttl=settings.idempotency_ttl_seconds,
            lock_seconds=settings.idempotency_lock_seconds,
            max_entries=settings.idempotency_max_entries,
            max_body=settings.idempotency_max_body_bytes,
            client_bucket=identity.bucket,
            local=local,
        ),
        identity=identity,
    )
    public = register_public_api(app)
    authenticator = Authenticator(build_verifier(settings), tiers, public.sign_in_required)
    app.extensions["gateway_auth"] = authenticator
    install_docs(app, settings, tiers)
    install_web(app, settings, tiers, app.extensions["gateway"].ai.client)

    install_security_headers(app, settings)
    install_cors(app, settings)
    edge: Edge = app.extensions["gateway"]
    limiter = build_limiter(
        settings,
        identity,
        tier=authenticator.tier,
        limited_endpoints=public.limited,
        ai_endpoints=public.costs_ai,
        answer_waiting=edge.idempotency.answer_waiting,
        local_path=local_path,
    )
    install_limit_responses(app, limiter)
    install_authentication(app, authenticator, public.limited)
    limiter.init_app(app)

    @app.before_request
    def _after_limits() -> None:
        g.rate_limits_checked = True
        if request.method != "OPTIONS" and request.endpoint in public.limited:
            identity.authenticate()

    app.extensions["gateway_limiter"] = limiter
    storage = limiter.storage if settings.rate_limit_enabled else None
    if isinstance(storage, ResilientRedisStorage) and not settings.rate_limit_fail_open:
        primary = storage.primary

        def _rate_limit_store() -> None:
            if not primary.check():
                raise RuntimeError("redis did not answer PING")

        add_readiness_check(app, "rate_limit_store", _rate_limit_store)
    if settings.rate_limit_enabled and not settings.redis_url:
        log.warning(
            "rate_limits_on_this_machine",
            detail="limits and idempotency keys are shared by this machine's workers only; "
            "set REDIS_URL so that every replica counts together",
            path=str(local_path),
        )
    return app
