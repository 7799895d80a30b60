"""CORS from an exact allow-list, preflights outside the limits, security headers everywhere."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from chassis.settings import SettingsError, load_settings
from gateway.settings import GatewaySettings

APP_ORIGIN = "https://app.ideasnap.example"
ADMIN_ORIGIN = "https://admin.ideasnap.example:8443"
BAD_ID = "/v1/uploads/not.an.id"  # refused by the gateway itself: no service involved


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def cors_headers(response: object) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()  # type: ignore[attr-defined]
        if name.lower().startswith("access-control-")
    }


def test_allowed_origins_get_cors_headers_and_others_none(
    bare_app: Callable[..., Flask],
) -> None:
    app = bare_app(cors_allowed_origins=[APP_ORIGIN, ADMIN_ORIGIN])
    client = app.test_client()
    rejected_before = counter("gateway_cors_rejected_total")

    for origin in (APP_ORIGIN, ADMIN_ORIGIN):
        allowed = client.get("/openapi.json", headers={"Origin": origin})
        assert allowed.headers["Access-Control-Allow-Origin"] == origin
        exposed = allowed.headers["Access-Control-Expose-Headers"]
        for header in ("X-Request-ID", "Retry-After", "RateLimit-Remaining", "X-RateLimit-Reset"):
            assert header in exposed
        assert "Access-Control-Allow-Credentials" not in allowed.headers
        assert "Origin" in allowed.headers["Vary"]

    # Errors are readable by an allowed page too (the service behind is down here: 503).
    error = client.get("/v1/presets", headers={"Origin": APP_ORIGIN})
    assert error.status_code == 503
    assert error.headers["Access-Control-Allow-Origin"] == APP_ORIGIN

    lookalikes = (
        "https://evil.example",
        f"{APP_ORIGIN}.evil.example",
        "http://app.ideasnap.example",
        "https://app.ideasnap.example:444",
        "https://xapp.ideasnap.example",
        "null",
    )
    for origin in lookalikes:
        refused = client.get("/openapi.json", headers={"Origin": origin})
        assert refused.status_code == 200
        assert cors_headers(refused) == {}, origin
    assert counter("gateway_cors_rejected_total") - rejected_before == len(lookalikes)

    # No Origin (the mobile app, curl): no CORS headers, nothing counted.
    assert cors_headers(client.get("/openapi.json")) == {}
    assert counter("gateway_cors_rejected_total") - rejected_before == len(lookalikes)


def test_preflight_for_a_multipart_upload_with_custom_headers(
    bare_app: Callable[..., Flask],
) -> None:
    app = bare_app(
        cors_allowed_origins=[APP_ORIGIN],
        rate_limit_default="2/minute",
        cors_max_age_seconds=900,
        api_key_header="X-API-Key",
    )
    client = app.test_client()
    asked = ["content-type", "idempotency-key", "x-api-key", "x-request-id", "traceparent"]
    upstream_errors_before = sum(
        counter("gateway_upstream_errors_total", upstream=name, code="upstream_unavailable")
        for name in ("upload", "ai")
    )
    for path in ("/v1/snaps", "/v1/uploads", "/v1/ideas"):
        for _ in range(3):
            preflight = client.options(
                path,
                headers={
                    "Origin": APP_ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": ", ".join(asked),
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
            assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
            allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
            assert all(header in allowed for header in asked)
            assert preflight.headers["Access-Control-Max-Age"] == "900"
            assert "X-RateLimit-Remaining" not in preflight.headers

    # Nine preflights used none of the limit of 2, and touched no service.
    remaining = [client.get(BAD_ID).headers["X-RateLimit-Remaining"] for _ in range(2)]
    assert remaining == ["1", "0"]
    assert client.get(BAD_ID).status_code == 429
    upstream_errors_after = sum(
        counter("gateway_upstream_errors_total", upstream=name, code="upstream_unavailable")
        for name in ("upload", "ai")
    )
    assert upstream_errors_after == upstream_errors_before

    # A preflight for another origin is answered without any CORS permission.
    foreign = client.options(
        "/v1/snaps",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert cors_headers(foreign) == {}


def test_a_foreign_origin_cannot_post(bare_app: Callable[..., Flask]) -> None:
    client = bare_app(cors_allowed_origins=[APP_ORIGIN]).test_client()
    # A cross-site form may post multipart without a preflight; it is refused here.
    refused = client.post(
        "/v1/snaps", headers={"Origin": "https://evil.example"}, data={"image": "x"}
    )
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "origin_not_allowed"
    assert cors_headers(refused) == {}
    # The allowed origin and the gateway's own pages get through to the real checks.
    allowed = client.post("/v1/snaps", headers={"Origin": APP_ORIGIN}, json={})
    assert allowed.status_code == 415
    own = client.post("/v1/snaps", headers={"Origin": "http://localhost"}, json={})
    assert own.status_code == 415
    # Reads from a foreign origin are answered (without CORS headers a browser hides them).
    assert (
        client.get("/openapi.json", headers={"Origin": "https://evil.example"}).status_code == 200
    )


def test_security_headers_on_every_response(bare_app: Callable[..., Flask]) -> None:
    client = bare_app(rate_limit_default="2/minute").test_client()
    responses = {
        "ok": client.get("/healthz"),
        "contract": client.get("/openapi.json"),
        "not found": client.get("/nope"),
        "upstream down": client.get("/v1/presets"),
        "no such upload": client.get(BAD_ID),
        "refused": client.get(BAD_ID),
    }
    assert responses["upstream down"].status_code == 503
    assert responses["refused"].status_code == 429
    for name, response in responses.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert response.headers["Referrer-Policy"] == "no-referrer", name
        assert "default-src 'none'" in response.headers["Content-Security-Policy"], name
        assert "Strict-Transport-Security" not in response.headers, name
    assert responses["refused"].headers["Cache-Control"] == "no-store"


def test_hsts_only_behind_tls_through_a_trusted_proxy(bare_app: Callable[..., Flask]) -> None:
    behind_proxy = bare_app(trusted_proxy_hops=1, hsts_max_age_seconds=600).test_client()
    secure = behind_proxy.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
    assert "Strict-Transport-Security" not in behind_proxy.get("/healthz").headers
    # Without trusted proxies a client cannot claim TLS.
    direct = bare_app(trusted_proxy_hops=0).test_client()
    claimed = direct.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in claimed.headers


def test_internal_routes_and_metrics_are_not_public(bare_app: Callable[..., Flask]) -> None:
    client = bare_app().test_client()
    for path in (
        "/metrics",
        "/internal/uploads/0123456789abcdef0123456789abcdef",
        "/internal/uploads/0123456789abcdef0123456789abcdef/preview",
        "/v1/uploads/..%2Finternal%2Fuploads",
        "/v1/uploads/%2e%2e/thumbnail",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] in ("not_found", "upload_not_found")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CORS_ALLOWED_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "true"}, "CORS_ALLOW_CREDENTIALS"),
        ({"CORS_ALLOWED_ORIGINS": "https://a.example/path"}, "CORS_ALLOWED_ORIGINS"),
        ({"CORS_ALLOWED_ORIGINS": "https://*.example"}, "CORS_ALLOWED_ORIGINS"),
        ({"RATE_LIMIT_DEFAULT": "sixty a minute"}, "RATE_LIMIT_DEFAULT"),
        ({"AI_DAILY_QUOTA": "100/fortnight"}, "AI_DAILY_QUOTA"),
        ({"TRUSTED_PROXY_HOPS": "-1"}, "TRUSTED_PROXY_HOPS"),
    ],
)
def test_bad_edge_settings_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings(GatewaySettings)


def test_origins_are_read_as_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f" {APP_ORIGIN}/ , {ADMIN_ORIGIN}")
    assert load_settings(GatewaySettings).cors_allowed_origins == [APP_ORIGIN, ADMIN_ORIGIN]
