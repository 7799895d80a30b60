"""What the gateway sends library-svc: the caller, never the person's token; the webhook's secret.

library-svc here is a small HTTP server on loopback that answers every request with
what it received, so the test sees exactly what crossed the hop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.support.firebase_emulator import unsigned_token

PROJECT = "demo-library-routes"


class Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        payload = json.dumps(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("ETag", '"v7"')
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815 - http.server names

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(echo_url: str) -> FlaskClient:
    settings = GatewaySettings(
        library_svc_url=echo_url,
        firebase_project_id=PROJECT,
        firebase_auth_emulator_host="127.0.0.1:9",
        otel_sdk_disabled=True,
        rate_limit_enabled=False,
    )
    return create_app(settings).test_client()


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/me"),
        ("GET", "/v1/snaps?page_size=5"),
        ("PATCH", "/v1/drafts/7d0f7d2e-9a57-4a3e-8d43-0c7c1b7e2f10"),
        ("POST", "/v1/drafts/7d0f7d2e-9a57-4a3e-8d43-0c7c1b7e2f10/revisions/2:restore"),
        ("GET", "/v1/sync/changes?cursor=abc"),
    ],
)
def test_a_person_route_sends_the_caller_and_not_the_token(
    client: FlaskClient, method: str, path: str
) -> None:
    token = unsigned_token(PROJECT, "person-1")
    answer = client.open(
        path,
        method=method,
        json={"title": "x"} if method == "PATCH" else None,
        headers={
            "Authorization": f"Bearer {token}",
            "If-Match": '"v6"',
            "X-IdeaSnap-User": "someone-else",
        },
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    seen = answer.get_json()
    sent = lowered(seen["headers"])
    assert "authorization" not in sent
    assert token not in json.dumps(seen)
    assert sent["x-ideasnap-user"] == "person-1"
    assert sent["x-ideasnap-tier"] == "free"
    assert sent["if-match"] == '"v6"'
    assert seen["path"] == path
    assert answer.headers["ETag"] == '"v7"'


def test_the_billing_webhook_sends_its_secret_on_and_no_person(client: FlaskClient) -> None:
    answer = client.post(
        "/v1/billing/events",
        json={"event": {"id": "e1", "type": "TEST"}},
        headers={"Authorization": "Bearer webhook-secret"},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    seen = answer.get_json()
    sent = lowered(seen["headers"])
    assert sent["authorization"] == "Bearer webhook-secret"
    assert "x-ideasnap-user" not in sent
    assert sent["x-ideasnap-tier"] == "anonymous"
    assert json.loads(seen["body"]) == {"event": {"id": "e1", "type": "TEST"}}


def test_internal_routes_and_odd_ids_never_reach_library_svc(client: FlaskClient) -> None:
    token = unsigned_token(PROJECT, "person-1")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/internal/admission", json={"bytes": 1}, headers=headers).status_code == 404
    assert client.post("/internal/snaps", json={}, headers=headers).status_code == 404
    restore = client.post(
        "/v1/drafts/7d0f7d2e-9a57-4a3e-8d43-0c7c1b7e2f10/revisions/two:restore", headers=headers
    )
    assert restore.status_code == 404
    huge = client.post(
        "/v1/drafts/7d0f7d2e-9a57-4a3e-8d43-0c7c1b7e2f10/revisions/8893855784797044998144:restore",
        headers=headers,
    )
    assert huge.status_code == 404
    assert huge.get_json()["error"]["code"] == "revision_not_found"
    odd = client.get("/v1/snaps/..%2Finternal", headers=headers)
    assert odd.status_code == 404
    assert odd.get_json()["error"]["code"] in ("snap_not_found", "not_found")
