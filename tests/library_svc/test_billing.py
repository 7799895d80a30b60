"""The documented RevenueCat samples replayed, with duplicates and out of order.

The tier is checked after every event both where library-svc reports it (``GET /v1/me``)
and where the gateway reads it (the ``tier`` custom claim in the Firebase Auth emulator).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.library_svc.conftest import AppFactory, who
from tests.support.firebase_emulator import AuthEmulator

SAMPLES = Path(__file__).resolve().parents[2] / "library-svc" / "samples" / "revenuecat"
SECRET = "Bearer webhook-secret-for-tests"


def sample(name: str, uid: str, offset_ms: int) -> dict[str, Any]:
    """A sample file for this person, its times moved by ``offset_ms`` (to happen now)."""
    payload = json.loads((SAMPLES / name).read_text())
    event = payload["event"]
    for key, value in list(event.items()):
        if key.endswith("_ms") and isinstance(value, int):
            event[key] = value + offset_ms
        if value == "FIREBASE_UID":
            event[key] = uid
    event["aliases"] = [uid]
    # Event ids are unique per event everywhere; each test person gets their own.
    event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{uid}/{event['id']}"))
    return payload


@pytest.fixture
def billing(
    make_app: AppFactory, auth_emulator: AuthEmulator, monkeypatch: pytest.MonkeyPatch
) -> FlaskClient:
    for name, value in auth_emulator.env().items():
        monkeypatch.setenv(name, value)
    return make_app(
        billing_webhook_authorization=SECRET,
        firebase_claims_enabled=True,
        firebase_project_id=auth_emulator.project_id,
    ).test_client()


def claim(auth_emulator: AuthEmulator, uid: str) -> str | None:
    user = auth_emulator.lookup(uid) or {}
    return json.loads(user.get("customAttributes") or "{}").get("tier")


def test_samples_replayed_out_of_order_and_twice_give_the_right_tier_each_step(
    billing: FlaskClient, auth_emulator: AuthEmulator
) -> None:
    account = auth_emulator.sign_up(f"buyer-{uuid.uuid4().hex[:8]}@example.com")
    uid = account["localId"]
    auth_emulator.set_claims(uid, {"beta": True})
    first = json.loads((SAMPLES / "01_initial_purchase.json").read_text())
    offset = int(time.time() * 1000) - first["event"]["event_timestamp_ms"]
    steps = [
        ("01_initial_purchase.json", "applied", "pro"),
        ("01_initial_purchase.json", "duplicate", "pro"),
        ("03_cancellation.json", "applied", "pro"),  # before the renewal it follows
        ("02_renewal.json", "applied", "pro"),  # older than the cancellation: no undo
        ("04_uncancellation.json", "applied", "pro"),
        ("05_billing_issue.json", "applied", "pro"),
        ("06_product_change.json", "applied", "pro"),
        ("07_expiration.json", "applied", "free"),
        ("08_renewal_delivered_late.json", "applied", "free"),
        ("02_renewal.json", "duplicate", "free"),
    ]
    renewing = []
    for name, status, tier in steps:
        answer = billing.post(
            "/v1/billing/events",
            json=sample(name, uid, offset),
            headers={"Authorization": SECRET},
        )
        assert answer.status_code == 200, (name, answer.json)
        assert answer.json == {"status": status, "tier": tier}, name
        me = billing.get("/v1/me", headers=who(uid)).json
        assert me["tier"] == tier, name
        assert me["features"]["ads"] is (tier != "pro"), name
        assert claim(auth_emulator, uid) == tier, name
        [entitlement] = me["entitlements"]
        renewing.append(entitlement["will_renew"])
        if name == "05_billing_issue.json":
            assert entitlement["billing_issue"] is True
    assert renewing[2:4] == [False, False]  # the late renewal did not undo the cancellation
    assert renewing[4] is True
    user = auth_emulator.lookup(uid)
    assert json.loads(user["customAttributes"])["beta"] is True  # other claims kept
    me = billing.get("/v1/me", headers=who(uid)).json
    assert me["limits"] == {"history_size": 200, "storage_bytes": 1024**3}


def test_a_wrong_secret_is_401_and_changes_nothing(
    billing: FlaskClient, auth_emulator: AuthEmulator
) -> None:
    uid = auth_emulator.sign_up(f"wrong-{uuid.uuid4().hex[:8]}@example.com")["localId"]
    first = json.loads((SAMPLES / "01_initial_purchase.json").read_text())
    offset = int(time.time() * 1000) - first["event"]["event_timestamp_ms"]
    event = sample("01_initial_purchase.json", uid, offset)
    for headers in ({"Authorization": "Bearer guessed"}, {}, {"Authorization": SECRET + "x"}):
        answer = billing.post("/v1/billing/events", json=event, headers=headers)
        assert answer.status_code == 401
        assert answer.json["error"]["code"] == "invalid_webhook_authorization"
    assert billing.get("/v1/me", headers=who(uid)).json["tier"] == "free"
    assert claim(auth_emulator, uid) is None
    accepted = billing.post("/v1/billing/events", json=event, headers={"Authorization": SECRET})
    assert accepted.json["status"] == "applied"  # the refused tries consumed nothing
    assert claim(auth_emulator, uid) == "pro"
    me = billing.get("/v1/me", headers=who(uid)).json
    assert me["limits"] == {"history_size": 10000, "storage_bytes": 20 * 1024**3}


def test_webhooks_without_a_configured_secret_are_refused(client: FlaskClient) -> None:
    answer = client.post("/v1/billing/events", json={"event": {}}, headers={"Authorization": "x"})
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "billing_not_configured"
