"""Limits, the AI quota and client identity, in-process against the real services."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from chassis.settings import SettingsError
from gateway import identity as identity_module
from gateway.identity import ApiKeys, address_bucket
from testbed.images import photo
from testbed.processes import free_port
from testbed.servers import RedisServer

BAD_ID = "/v1/uploads/not.an.id"
PROXY = "10.1.2.3"
APP_KEY = "k-0123456789abcdef-mobile"
PARTNER_KEY = "k-fedcba9876543210-partner"


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snap(client: FlaskClient, image: bytes, **headers: str) -> object:
    return client.post(
        "/v1/snaps",
        data={"image": (io.BytesIO(image), "photo.jpg"), "count": "2"},
        content_type="multipart/form-data",
        headers=headers,
    )


@pytest.mark.integration
def test_ai_limit_and_daily_quota(make_app: Callable[..., Flask]) -> None:
    client = make_app(
        rate_limit_default="100/minute", rate_limit_ai="4/minute", ai_daily_quota="2/day"
    ).test_client()
    quota_before = counter("gateway_rate_limited_total", limit="quota")
    ai_before = counter("gateway_rate_limited_total", limit="ai")

    # A refused image costs an AI call attempt (rate limit) but no quota.
    refused = snap(client, b"this is not an image")
    assert refused.status_code == 415
    first = snap(client, photo(320, 240))
    second = snap(client, photo(320, 240))
    assert (first.status_code, second.status_code) == (201, 201)
    # The headers describe the limit closest to running out: the quota, now used up.
    assert second.headers["X-RateLimit-Limit"] == "2"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert second.headers["RateLimit-Policy"] == "100;w=60, 4;w=60, 2;w=86400"

    over_quota = snap(client, photo(320, 240))
    assert over_quota.status_code == 429
    assert over_quota.json["error"]["code"] == "quota_exceeded"
    details = over_quota.json["error"]["details"]
    assert details == {
        "limit": "quota",
        "tier": "anonymous",
        "allowed": "2 per 1 day",
        "reset_at": details["reset_at"],
        "retry_after_seconds": int(over_quota.headers["Retry-After"]),
    }
    reset_in = datetime.fromisoformat(details["reset_at"]).timestamp() - time.time()
    assert abs(reset_in - int(over_quota.headers["Retry-After"])) <= 2
    assert 60 < int(over_quota.headers["Retry-After"]) <= 86401
    # Routes that cost no AI are not affected.
    assert client.get("/v1/presets").status_code == 200
    # The AI calls are counted together over both AI routes: the fifth is one too many.
    too_fast = client.post("/v1/ideas", json={"upload_id": first.json["upload"]["id"]})
    assert too_fast.status_code == 429
    assert too_fast.json["error"]["code"] == "rate_limited"
    assert too_fast.json["error"]["details"]["limit"] == "ai"
    assert too_fast.json["error"]["details"]["tier"] == "anonymous"
    assert too_fast.json["error"]["details"]["retry_after_seconds"] == int(
        too_fast.headers["Retry-After"]
    )
    assert 1 <= int(too_fast.headers["Retry-After"]) <= 61
    assert too_fast.headers["RateLimit-Remaining"] == "0"
    assert counter("gateway_rate_limited_total", limit="quota") - quota_before == 1
    assert counter("gateway_rate_limited_total", limit="ai") - ai_before == 1


def test_default_limit_is_one_budget_over_all_routes(bare_app: Callable[..., Flask]) -> None:
    client = bare_app(rate_limit_default="3/minute").test_client()
    before = counter("gateway_rate_limited_total", limit="default")
    statuses = [
        client.get("/v1/presets").status_code,  # 503: ai-svc is not running
        client.get(BAD_ID).status_code,  # 404 from the gateway itself
        client.post("/v1/ideas", json={}).status_code,  # 503
    ]
    assert statuses == [503, 404, 503]
    refused = client.get("/v1/uploads/abc/thumbnail")
    assert refused.status_code == 429
    body = refused.json["error"]
    assert body["code"] == "rate_limited"
    assert body["request_id"] == refused.headers["X-Request-ID"]
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > 0
    assert 1 <= int(refused.headers["RateLimit-Reset"]) <= 61
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert counter("gateway_rate_limited_total", limit="default") - before == 1
    # Health, the contract and the docs are never limited.
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_limits_can_be_switched_off(bare_app: Callable[..., Flask]) -> None:
    client = bare_app(rate_limit_enabled=False, rate_limit_default="1/minute").test_client()
    responses = [client.get(BAD_ID) for _ in range(3)]
    assert [response.status_code for response in responses] == [404, 404, 404]
    assert "X-RateLimit-Limit" not in responses[0].headers


def test_without_redis_each_worker_counts_in_memory_when_configured(
    bare_app: Callable[..., Flask],
) -> None:
    client = bare_app(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        rate_limit_memory_fallback=True,
        rate_limit_default="2/minute",
        rate_limit_ai="1/minute",
    ).test_client()
    errors_before = counter("gateway_rate_limit_store_errors_total")
    answers = [client.get(BAD_ID) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [404, 404, 429]
    assert answers[2].json["error"]["code"] == "rate_limited"
    assert answers[2].json["error"]["details"]["limit"] == "default"
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 61
    # Counts from an outage are approximate, so no limit headers are promised.
    assert "X-RateLimit-Remaining" not in answers[0].headers
    assert counter("gateway_rate_limit_store_errors_total") - errors_before == 3
    # The AI limit counts in memory too: a second AI call is refused by it, not by default.
    other = {"REMOTE_ADDR": "192.0.2.80"}
    assert client.post("/v1/ideas", json={}, environ_base=other).status_code == 503
    refused = client.post("/v1/ideas", json={}, environ_base=other)
    assert refused.status_code == 429
    assert refused.json["error"]["details"]["limit"] == "ai"


def test_other_strategies_give_the_same_refusals(
    bare_app: Callable[..., Flask], redis_server: RedisServer
) -> None:
    for strategy in ("moving-window", "sliding-window-counter"):
        client = bare_app(
            redis_url=redis_server.url,
            rate_limit_strategy=strategy,
            rate_limit_default="2/minute",
            rate_limit_ai="1/minute",
        ).test_client()
        other = {"REMOTE_ADDR": f"192.0.2.{len(strategy)}"}
        answers = [client.get(BAD_ID, environ_base=other) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [404, 404, 429], strategy
        assert answers[1].headers["X-RateLimit-Remaining"] == "0"
        assert answers[2].json["error"]["details"]["limit"] == "default"
        assert 1 <= int(answers[2].headers["Retry-After"]) <= 61
        redis_server.client().flushall()


def test_spoofed_forwarded_for_does_not_buy_a_fresh_bucket(
    bare_app: Callable[..., Flask],
) -> None:
    client = bare_app(trusted_proxy_hops=1, rate_limit_default="3/minute").test_client()
    real_client = "203.0.113.7"

    def via_proxy(forwarded_for: str) -> int:
        return client.get(
            BAD_ID,
            headers={"X-Forwarded-For": forwarded_for},
            environ_base={"REMOTE_ADDR": PROXY},
        ).status_code

    # The client writes whatever it likes; the proxy appends the address it saw.
    spoofed = [via_proxy(f"198.51.100.{n}, {real_client}") for n in range(1, 6)]
    assert spoofed == [404, 404, 404, 429, 429]
    # Another client behind the same proxy has its own bucket.
    assert via_proxy("192.0.2.44") == 404
    # A client that talks to the gateway directly cannot pose as a proxy: with no
    # trusted hop configured, X-Forwarded-For is not read at all.
    direct = bare_app(trusted_proxy_hops=0, rate_limit_default="2/minute").test_client()
    statuses = [
        direct.get(
            BAD_ID,
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
            environ_base={"REMOTE_ADDR": real_client},
        ).status_code
        for n in range(3)
    ]
    assert statuses == [404, 404, 429]


def test_ipv6_clients_are_counted_per_64() -> None:
    assert address_bucket("2001:db8::1") == address_bucket("2001:db8::ffff:1")
    assert address_bucket("2001:db8::1") == "ip:2001:db8::/64"
    assert address_bucket("2001:db8:0:1::1") != address_bucket("2001:db8::1")
    assert address_bucket("::ffff:192.0.2.1") == "ip:192.0.2.1"
    assert address_bucket("192.0.2.1") == "ip:192.0.2.1"


def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys"
    path.write_text(f"# mounted secret\n{APP_KEY}:mobile-app\n\n{PARTNER_KEY}\n")
    return path


def test_api_keys_give_their_own_bucket_and_wrong_keys_are_refused(
    bare_app: Callable[..., Flask], tmp_path: Path
) -> None:
    client = bare_app(
        api_keys_file=keys_file(tmp_path), rate_limit_default="2/minute"
    ).test_client()
    wrong = client.get(BAD_ID, headers={"X-API-Key": "k-0123456789abcdef-mobil3"})
    assert wrong.status_code == 401
    assert wrong.json["error"]["code"] == "invalid_api_key"
    # The wrong key was counted against the address (guessing keys is rate limited) ...
    assert client.get(BAD_ID).status_code == 404
    assert client.get(BAD_ID).status_code == 429
    # ... while a good key is a client of its own, wherever it connects from.
    with_key = [client.get(BAD_ID, headers={"X-API-Key": APP_KEY}).status_code for _ in range(3)]
    assert with_key == [404, 404, 429]
    assert client.get(BAD_ID, headers={"X-API-Key": PARTNER_KEY}).status_code == 404


def test_keys_can_be_required(bare_app: Callable[..., Flask], tmp_path: Path) -> None:
    client = bare_app(api_keys_file=keys_file(tmp_path), api_keys_required=True).test_client()
    missing = client.get("/v1/presets")
    assert missing.status_code == 401
    assert missing.json["error"]["code"] == "api_key_required"
    assert client.get(BAD_ID, headers={"X-API-Key": APP_KEY}).status_code == 404
    for path in ("/healthz", "/openapi.json"):
        assert client.get(path).status_code == 200
    preflight = client.options("/v1/presets", headers={"Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    document = client.get("/openapi.json").json
    assert document["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert document["security"] == [{"ApiKey": []}]


def test_api_keys_file_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = keys_file(tmp_path)
    keys = ApiKeys(path)
    assert len(keys) == 2
    assert keys.lookup(APP_KEY) == "mobile-app"
    assert keys.lookup(PARTNER_KEY).startswith("key-")  # named by a hash, never the key
    assert PARTNER_KEY not in keys.lookup(PARTNER_KEY)
    assert keys.lookup(APP_KEY[:-1]) is None
    assert keys.lookup("") is None

    # A rotated secret is picked up without a restart.
    monkeypatch.setattr(identity_module, "RELOAD_CHECK_SECONDS", 0.0)
    rotated = "k-a-brand-new-key-0001"
    path.write_text(f"{rotated}:mobile-app\n")
    os.utime(path, (1, 1))
    assert keys.lookup(rotated) == "mobile-app"
    assert keys.lookup(APP_KEY) is None

    short = tmp_path / "short"
    short.write_text("tooshort:someone\n")
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        ApiKeys(short)
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        ApiKeys(tmp_path / "missing")
