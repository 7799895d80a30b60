"""GET /v1/me, DELETE /v1/me and the export, on both databases, with real upload-svc and
the Firebase Auth emulator."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from library_svc.models import (
    AccountDeletion,
    BillingEvent,
    Draft,
    DraftRevision,
    Entitlement,
    Person,
    Snap,
    Tombstone,
)
from library_svc.sweep import sweep_once
from testbed.processes import Service, free_port
from tests.library_svc.conftest import AppFactory, snap_record, store_photo, who
from tests.support.firebase_emulator import AuthEmulator

SECRET = "Bearer account-tests"


@pytest.fixture
def account_app(
    make_app: AppFactory, auth_emulator: AuthEmulator, monkeypatch: pytest.MonkeyPatch
) -> AppFactory:
    for name, value in auth_emulator.env().items():
        monkeypatch.setenv(name, value)

    def make(**overrides: Any) -> Flask:
        return make_app(
            billing_webhook_authorization=SECRET,
            firebase_claims_enabled=True,
            firebase_project_id=auth_emulator.project_id,
            **overrides,
        )

    return make


def fill_library(client: FlaskClient, upload_svc: Service, uid: str) -> dict[str, Any]:
    """Everything a person can have: snaps with photos, drafts with revisions, a tombstone,
    an entitlement from a purchase."""
    uploads = [store_photo(upload_svc, uid), store_photo(upload_svc, uid, 300, 200)]
    snaps = [
        client.post("/internal/snaps", json=snap_record(upload), headers=who(uid)).json
        for upload in uploads
    ]
    kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    for draft_id in (kept, dropped):
        client.put(f"/v1/drafts/{draft_id}", json={"body": "one"}, headers=who(uid))
    client.patch(
        f"/v1/drafts/{kept}", json={"body": "two"}, headers={**who(uid), "If-Match": '"v1"'}
    )
    client.delete(f"/v1/drafts/{dropped}", headers={**who(uid), "If-Match": '"v1"'})
    event_id = str(uuid.uuid4())
    bought = client.post(
        "/v1/billing/events",
        json={
            "event": {
                "id": event_id,
                "type": "INITIAL_PURCHASE",
                "app_user_id": uid,
                "entitlement_ids": ["pro"],
                "product_id": "ideasnap_pro_monthly",
                "store": "PLAY_STORE",
                "transaction_id": "GPA.1234",
                "price": 4.99,
                "currency": "EUR",
                "event_timestamp_ms": 1_700_000_000_000,
                "expiration_at_ms": 4_102_444_800_000,
            }
        },
        headers={"Authorization": SECRET},
    )
    assert bought.json["status"] == "applied"
    return {"uploads": uploads, "snaps": snaps, "draft": kept, "event_id": event_id}


def rows_of(app: Flask, uid: str) -> dict[str, int]:
    engine = app.extensions["db_engine"]
    counts = {}
    with engine.connect() as connection:
        for model, column in (
            (Person, Person.uid),
            (Snap, Snap.owner),
            (Draft, Draft.owner),
            (DraftRevision, DraftRevision.owner),
            (Tombstone, Tombstone.owner),
            (Entitlement, Entitlement.owner),
            (BillingEvent, BillingEvent.owner),
        ):
            counts[model.__tablename__] = connection.scalar(
                select(func.count()).select_from(model).where(column == uid)
            )
    return counts


def photo_status(upload_svc: Service, upload_id: str, uid: str) -> int:
    """The photo as its owner asks for it (to anyone else an owned photo is always 404)."""
    answer = requests.get(f"{upload_svc.url}/v1/uploads/{upload_id}", headers=who(uid), timeout=10)
    return answer.status_code


def test_me_reports_tier_limits_usage_and_storage(
    account_app: AppFactory, upload_svc: Service, auth_emulator: AuthEmulator
) -> None:
    app = account_app()
    client = app.test_client()
    uid = auth_emulator.sign_up(f"me-{uuid.uuid4().hex[:8]}@example.com")["localId"]
    me = client.get("/v1/me", headers=who(uid)).json
    assert me["tier"] == "free"
    assert me["features"] == {"ads": True}
    assert me["history"] == {"snaps": 0, "limit": 200}
    library = fill_library(client, upload_svc, uid)
    me = client.get("/v1/me", headers=who(uid)).json
    assert me["tier"] == "pro"
    assert me["features"] == {"ads": False}
    assert me["usage"]["snaps"] == 2
    assert me["history"] == {"snaps": 2, "limit": 10000}
    assert me["storage"]["used_bytes"] == sum(u["size"] for u in library["uploads"])
    assert me["storage"]["limit_bytes"] == 20 * 1024**3
    assert me["entitlements"][0]["id"] == "pro"
    assert me["entitlements"][0]["active"] is True


def test_delete_me_removes_everything_checked_one_by_one(
    account_app: AppFactory, upload_svc: Service, auth_emulator: AuthEmulator
) -> None:
    app = account_app()
    client = app.test_client()
    uid = auth_emulator.sign_up(f"leaver-{uuid.uuid4().hex[:8]}@example.com")["localId"]
    library = fill_library(client, upload_svc, uid)
    before = rows_of(app, uid)
    assert all(before[name] > 0 for name in before), before
    assert all(photo_status(upload_svc, u["id"], uid) == 200 for u in library["uploads"])

    answer = client.delete("/v1/me", headers=who(uid))
    assert answer.status_code == 204

    for upload in library["uploads"]:
        assert photo_status(upload_svc, upload["id"], uid) == 404
    assert rows_of(app, uid) == dict.fromkeys(before, 0)
    assert auth_emulator.lookup(uid) is None
    with app.extensions["db_engine"].connect() as connection:
        purchase = connection.execute(
            select(BillingEvent).where(BillingEvent.id == library["event_id"])
        ).one()
    assert purchase.owner is None
    assert purchase.payload is None
    assert (purchase.transaction_id, purchase.price, purchase.currency) == ("GPA.1234", 4.99, "EUR")

    for method, path in (("get", "/v1/snaps"), ("get", "/v1/me"), ("get", "/v1/sync/changes")):
        gone = getattr(client, method)(path, headers=who(uid))
        assert gone.status_code == 410
        assert gone.json["error"]["code"] == "account_deleted"
    recreate = client.put(f"/v1/drafts/{uuid.uuid4()}", json={"body": "x"}, headers=who(uid))
    assert recreate.status_code == 410
    snap = client.post("/internal/snaps", json=snap_record(library["uploads"][0]), headers=who(uid))
    assert snap.status_code == 410
    assert client.delete("/v1/me", headers=who(uid)).status_code == 204
    assert rows_of(app, uid)["people"] == 0


def test_a_deletion_that_fails_half_way_is_finished_by_a_retry_or_the_sweep(
    account_app: AppFactory, upload_svc: Service, auth_emulator: AuthEmulator
) -> None:
    working = account_app(sweep_grace_seconds=0)
    broken = account_app(upload_svc_url=f"http://127.0.0.1:{free_port()}")
    for finisher in ("retry", "sweep"):
        uid = auth_emulator.sign_up(f"{finisher}-{uuid.uuid4().hex[:8]}@example.com")["localId"]
        library = fill_library(working.test_client(), upload_svc, uid)
        half = broken.test_client().delete("/v1/me", headers=who(uid))
        assert half.status_code == 202
        assert half.json["deletion"]["status"] == "pending"
        assert working.test_client().get("/v1/me", headers=who(uid)).status_code == 410
        with working.extensions["db_engine"].connect() as connection:
            record = connection.execute(
                select(AccountDeletion).where(AccountDeletion.uid == uid)
            ).one()
        assert record.completed_at is None
        assert "upstream_unavailable" in record.last_error or "unavailable" in record.last_error
        assert auth_emulator.lookup(uid) is not None  # the user goes last
        if finisher == "retry":
            assert working.test_client().delete("/v1/me", headers=who(uid)).status_code == 204
        else:
            assert sweep_once(working)["deletions_finished"] >= 1
        assert all(photo_status(upload_svc, u["id"], uid) == 404 for u in library["uploads"])
        assert set(rows_of(working, uid).values()) == {0}
        assert auth_emulator.lookup(uid) is None


def test_export_streams_one_zip_with_the_json_and_the_photos(
    account_app: AppFactory, upload_svc: Service, auth_emulator: AuthEmulator
) -> None:
    app = account_app()
    client = app.test_client()
    uid = auth_emulator.sign_up(f"export-{uuid.uuid4().hex[:8]}@example.com")["localId"]
    library = fill_library(client, upload_svc, uid)
    answer = client.get("/v1/me/export", headers=who(uid))
    assert answer.status_code == 200
    assert answer.mimetype == "application/zip"
    assert answer.is_streamed
    archive = zipfile.ZipFile(io.BytesIO(answer.get_data()))
    assert archive.testzip() is None
    document = json.loads(archive.read("library.json"))
    assert {s["id"] for s in document["snaps"]} == {s["id"] for s in library["snaps"]}
    [draft] = document["drafts"]
    assert [r["body"] for r in draft["revisions"]] == ["one", "two"]
    assert document["account"]["tier"] == "pro"
    assert document["purchases"][0]["transaction_id"] == "GPA.1234"
    for upload in library["uploads"]:
        stored = requests.get(
            f"{upload_svc.url}/v1/uploads/{upload['id']}", headers=who(uid), timeout=10
        ).content
        assert archive.read(f"photos/{upload['id']}.jpg") == stored


def test_an_export_while_upload_svc_is_down_is_a_whole_zip_naming_the_missing_photos(
    account_app: AppFactory, upload_svc: Service, auth_emulator: AuthEmulator
) -> None:
    working = account_app()
    uid = auth_emulator.sign_up(f"export-down-{uuid.uuid4().hex[:8]}@example.com")["localId"]
    library = fill_library(working.test_client(), upload_svc, uid)
    broken = account_app(upload_svc_url=f"http://127.0.0.1:{free_port()}")
    answer = broken.test_client().get("/v1/me/export", headers=who(uid))
    assert answer.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(answer.get_data()))
    assert archive.testzip() is None
    assert len(json.loads(archive.read("library.json"))["snaps"]) == 2
    missing = json.loads(archive.read("photos/missing.json"))["missing"]
    assert sorted(missing) == sorted(upload["id"] for upload in library["uploads"])
    assert not [name for name in archive.namelist() if name.endswith(".jpg")]
