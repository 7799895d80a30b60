"""Firebase ID tokens at the gateway, over the real path: certificates fetched over HTTP.

A local server plays Google's certificate endpoint (testbed/fakes/google_certs.py, test RSA
keys, ``Cache-Control`` and ``Date``); the gateway is pointed at it by
``FIREBASE_CERTS_URL``. A second local server plays a service behind the gateway and
records the headers it was sent.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from chassis.settings import SettingsError, load_settings
from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.tokens import CertificateCache, InvalidToken, TokenVerifier
from testbed.fakes.google_certs import FakeGoogleCerts, signing_key
from testbed.servers import RedisServer

PROJECT = "demo-ideasnap"


class RecordingService:
    """A service behind the gateway: answers 200 JSON and keeps each request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                recorder.seen.append(dict(self.headers.items()))
                body = b'{"templates": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def certs() -> Iterator[FakeGoogleCerts]:
    fake = FakeGoogleCerts().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def service() -> Iterator[RecordingService]:
    recorder = RecordingService()
    yield recorder
    recorder.stop()


@pytest.fixture
def gateway(certs: FakeGoogleCerts, service: RecordingService) -> Callable[..., Flask]:
    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "upload_svc_url": service.url,
            "ai_svc_url": service.url,
            "otel_sdk_disabled": True,
            "firebase_project_id": PROJECT,
            "firebase_certs_url": certs.url,
            **overrides,
        }
        return create_app(GatewaySettings(**values))

    return make


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def bad_tokens(certs: FakeGoogleCerts) -> dict[str, str]:
    now = int(time.time())
    return {
        "expired": certs.token(PROJECT, "u1", iat=now - 7200, exp=now - 3600),
        "wrong audience": certs.token(PROJECT, "u1", aud="another-project"),
        "wrong issuer": certs.token(PROJECT, "u1", iss="https://securetoken.google.com/other"),
        "issued in the future": certs.token(PROJECT, "u1", iat=now + 3600, exp=now + 7200),
        "alg none": unsigned(certs.claims(PROJECT, "u1"), {"alg": "none", "kid": "key-1"}),
        "tampered": _tampered(certs.token(PROJECT, "u1")),
        "signed by another key": certs.token(PROJECT, "u1", key=signing_key()),
        "unknown key id": certs.token(PROJECT, "u1", kid="no-such-key", key=signing_key()),
        "empty sub": certs.token(PROJECT, ""),
        "sub over 128 characters": certs.token(PROJECT, "a" * 129),
        "no exp": certs.token(PROJECT, "u1", exp=None),
        "not a JWT": "not-a-token",
    }


def _hs256_signature(claims: dict[str, Any], secret_pem: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing = f"{part({'alg': 'HS256', 'kid': 'key-1', 'typ': 'JWT'})}.{part(claims)}"
    digest = hmac.new(secret_pem.encode(), signing.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def hs256_with_public_certificate(certs: FakeGoogleCerts) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = certs.claims(PROJECT, "u1")
    header = part({"alg": "HS256", "kid": "key-1", "typ": "JWT"})
    return f"{header}.{part(claims)}.{_hs256_signature(claims, certs.pems['key-1'])}"


def test_every_bad_token_is_401_invalid_token(
    gateway: Callable[..., Flask], certs: FakeGoogleCerts, service: RecordingService
) -> None:
    client = gateway().test_client()
    tokens = bad_tokens(certs)
    tokens["HS256 signed with the public certificate"] = hs256_with_public_certificate(certs)
    before = len(service.seen)
    for reason, token in tokens.items():
        answer = client.get("/v1/presets", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, reason
        assert answer.get_json()["error"]["code"] == "invalid_token", reason
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', reason
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Token abc"):
        answer = client.get("/v1/presets", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.get_json()["error"]["code"] == "invalid_token"
    assert len(service.seen) == before, "a refused token must never reach a service"


def test_a_valid_token_is_the_person_downstream_and_client_copies_are_dropped(
    gateway: Callable[..., Flask], certs: FakeGoogleCerts, service: RecordingService
) -> None:
    client = gateway().test_client()
    token = certs.token(PROJECT, "person-1", tier="pro")
    answer = client.get(
        "/v1/presets",
        headers={
            "Authorization": f"Bearer {token}",
            "X-IdeaSnap-User": "someone-else",
            "X-IdeaSnap-Tier": "pro",
        },
    )
    assert answer.status_code == 200
    sent = service.seen[-1]
    assert sent["X-IdeaSnap-User"] == "person-1"
    assert sent["X-IdeaSnap-Tier"] == "pro"
    assert "Authorization" not in sent
    assert answer.headers["X-RateLimit-Limit"] == "600"  # the pro tier's rate limit

    free = client.get(
        "/v1/presets", headers={"Authorization": f"Bearer {certs.token(PROJECT, 'p2')}"}
    )
    assert free.status_code == 200
    assert service.seen[-1]["X-IdeaSnap-Tier"] == "free"
    assert free.headers["X-RateLimit-Limit"] == "120"


def test_anonymous_callers_cannot_claim_an_identity(
    gateway: Callable[..., Flask], service: RecordingService
) -> None:
    client = gateway().test_client()
    answer = client.get(
        "/v1/presets", headers={"X-IdeaSnap-User": "victim", "X-IdeaSnap-Tier": "pro"}
    )
    assert answer.status_code == 200
    sent = service.seen[-1]
    assert "X-IdeaSnap-User" not in sent
    assert sent["X-IdeaSnap-Tier"] == "anonymous"
    assert answer.headers["X-RateLimit-Limit"] == "60"


def test_signed_in_limits_count_per_person_not_per_address(
    gateway: Callable[..., Flask], certs: FakeGoogleCerts
) -> None:
    app = gateway()
    token = {"Authorization": f"Bearer {certs.token(PROJECT, 'traveller')}"}
    home = app.test_client()
    away = app.test_client()
    first = home.get("/v1/presets", headers=token, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    second = away.get("/v1/presets", headers=token, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert int(second.headers["X-RateLimit-Remaining"]) == (
        int(first.headers["X-RateLimit-Remaining"]) - 1
    )
    anonymous = away.get("/v1/presets", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert anonymous.headers["X-RateLimit-Remaining"] == "59"


def test_key_rotation_is_accepted_after_one_refetch(certs: FakeGoogleCerts) -> None:
    verifier = TokenVerifier(PROJECT, CertificateCache(certs.url, refetch_seconds=0))
    assert verifier.verify(certs.token(PROJECT, "u1")).uid == "u1"
    fetches = certs.fetches
    certs.add_key("key-2")
    try:
        assert verifier.verify(certs.token(PROJECT, "u2", kid="key-2")).uid == "u2"
        assert certs.fetches == fetches + 1
        assert verifier.verify(certs.token(PROJECT, "u3", kid="key-2")).uid == "u3"
        assert certs.fetches == fetches + 1, "a known key needs no fetch"
    finally:
        del certs.pems["key-2"]


def test_unknown_key_ids_do_not_cause_a_fetch_each(certs: FakeGoogleCerts) -> None:
    verifier = TokenVerifier(PROJECT, CertificateCache(certs.url, refetch_seconds=60))
    verifier.verify(certs.token(PROJECT, "u1"))
    fetches = certs.fetches
    for number in range(5):
        with pytest.raises(InvalidToken):
            verifier.verify(certs.token(PROJECT, "u1", kid=f"made-up-{number}", key=signing_key()))
    assert certs.fetches == fetches


def test_fifty_threads_verifying_at_once_cause_one_fetch() -> None:
    slow = FakeGoogleCerts(delay=0.3).start()
    try:
        verifier = TokenVerifier(PROJECT, CertificateCache(slow.url))
        tokens = [slow.token(PROJECT, f"user-{number}") for number in range(50)]
        barrier = threading.Barrier(50)

        def verify(token: str) -> str:
            barrier.wait()
            return verifier.verify(token).uid

        with ThreadPoolExecutor(50) as pool:
            uids = list(pool.map(verify, tokens))
        assert uids == [f"user-{number}" for number in range(50)]
        assert slow.fetches == 1
    finally:
        slow.stop()


def test_certificates_are_kept_for_their_max_age(certs: FakeGoogleCerts) -> None:
    now = [1000.0]
    short = FakeGoogleCerts(max_age=30).start()
    try:
        cache = CertificateCache(short.url, clock=lambda: now[0])
        verifier = TokenVerifier(PROJECT, cache)
        verifier.verify(short.token(PROJECT, "u1"))
        now[0] += 29
        verifier.verify(short.token(PROJECT, "u1"))
        assert short.fetches == 1
        now[0] += 2
        verifier.verify(short.token(PROJECT, "u1"))
        assert short.fetches == 2
    finally:
        short.stop()


def test_no_certificates_at_all_is_503_not_a_500(gateway: Callable[..., Flask]) -> None:
    client = gateway(firebase_certs_url="http://127.0.0.1:9/").test_client()
    token = FakeGoogleCerts().token(PROJECT, "u1")
    answer = client.get("/v1/presets", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "auth_unavailable"
    assert answer.headers["Retry-After"]


def test_a_route_that_requires_sign_in_refuses_anonymous_callers(
    gateway: Callable[..., Flask], certs: FakeGoogleCerts
) -> None:
    app = gateway()
    app.extensions["gateway_auth"].sign_in_required = frozenset({"public.get_presets"})
    client = app.test_client()
    answer = client.get("/v1/presets")
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "sign_in_required"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    token = certs.token(PROJECT, "u1")
    assert (
        client.get("/v1/presets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )


def test_emulator_tokens_only_in_emulator_mode(
    gateway: Callable[..., Flask], certs: FakeGoogleCerts
) -> None:
    claims = certs.claims(PROJECT, "emu-user")
    token = unsigned(claims, {"alg": "none", "typ": "JWT"})
    signed_mode = gateway().test_client()
    assert (
        signed_mode.get("/v1/presets", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    emulator = gateway(firebase_auth_emulator_host="127.0.0.1:9099").test_client()
    assert (
        emulator.get("/v1/presets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    expired = unsigned({**claims, "exp": int(time.time()) - 3600}, {"alg": "none"})
    wrong_aud = unsigned({**claims, "aud": "other"}, {"alg": "none"})
    for bad in (expired, wrong_aud):
        answer = emulator.get("/v1/presets", headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code == 401
        assert answer.get_json()["error"]["code"] == "invalid_token"


def test_emulator_mode_refuses_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(SettingsError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        load_settings(GatewaySettings)


def test_a_bad_tiers_file_stops_the_start(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "tiers.yaml"
    bad.write_text("tiers:\n  anonymous:\n    rate_limit: lots\n")
    monkeypatch.setenv("TIERS_FILE", str(bad))
    with pytest.raises(SettingsError, match="TIERS_FILE"):
        load_settings(GatewaySettings)


def test_the_contract_shows_the_bearer_scheme_and_who_needs_it(
    gateway: Callable[..., Flask],
) -> None:
    document = gateway().test_client().get("/openapi.json").get_json()
    scheme = document["components"]["securitySchemes"]["FirebaseIdToken"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    snaps = document["paths"]["/v1/snaps"]["post"]
    assert snaps["security"] == [{"FirebaseIdToken": []}, {}]  # optional: anonymous allowed
    assert document["paths"]["/healthz"]["get"]["security"] == []
    unauthorized = snaps["responses"]["401"]
    assert "invalid_token" in unauthorized["description"]
    assert "sign_in_required" in unauthorized["description"]
    assert "WWW-Authenticate" in unauthorized["headers"]
    assert "auth_unavailable" in snaps["responses"]["503"]["description"]


def test_a_required_operation_is_documented_as_token_only() -> None:
    from gateway.contract import BY_ENDPOINT
    from gateway.openapi import security_of

    required = dataclasses.replace(BY_ENDPOINT["get_presets"], sign_in="required")
    assert security_of(required, keys=False, keys_required=False) == [{"FirebaseIdToken": []}]


def test_forgetting_a_person_clears_their_counters_only(
    gateway: Callable[..., Flask], certs: FakeGoogleCerts
) -> None:
    from gateway.app import forget_person

    app = gateway()
    client = app.test_client()
    leaving = {"Authorization": f"Bearer {certs.token(PROJECT, 'leaving')}"}
    staying = {"Authorization": f"Bearer {certs.token(PROJECT, 'staying')}"}
    for _ in range(3):
        client.get("/v1/presets", headers=leaving)
        client.get("/v1/presets", headers=staying)
    forget_person(app, "leaving")
    assert client.get("/v1/presets", headers=leaving).headers["X-RateLimit-Remaining"] == "119"
    assert client.get("/v1/presets", headers=staying).headers["X-RateLimit-Remaining"] == "116"


def test_forgetting_a_person_clears_their_counters_in_redis_too(
    gateway: Callable[..., Flask], certs: FakeGoogleCerts, redis_server: RedisServer
) -> None:
    from gateway.app import forget_person

    app = gateway(redis_url=redis_server.url)
    client = app.test_client()
    leaving = {"Authorization": f"Bearer {certs.token(PROJECT, 'leaving-redis')}"}
    staying = {"Authorization": f"Bearer {certs.token(PROJECT, 'staying-redis')}"}
    for _ in range(3):
        client.get("/v1/presets", headers=leaving)
        client.get("/v1/presets", headers=staying)
    forget_person(app, "leaving-redis")
    assert client.get("/v1/presets", headers=leaving).headers["X-RateLimit-Remaining"] == "119"
    assert client.get("/v1/presets", headers=staying).headers["X-RateLimit-Remaining"] == "116"
