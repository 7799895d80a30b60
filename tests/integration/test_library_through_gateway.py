"""library-svc behind the gateway, all real processes: history, drafts, account, billing.

One stack (upload-svc, ai-svc, library-svc on SQLite, the gateway in emulator mode) and
the real Firebase Auth emulator. The tier table is one file given to every service
(``TIERS_FILE``), with a small free history so that a full history is quick to reach.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import yaml

from testbed.images import photo
from testbed.processes import Stack, start_stack
from tests.support.firebase_emulator import AuthEmulator

pytestmark = pytest.mark.integration

BILLING_SECRET = f"Bearer rc-{secrets.token_hex(16)}"
FREE_HISTORY = 3
LIMITS = {"rate_limit": "600/minute", "ai_rate_limit": "100/minute", "ai_daily_quota": "1000/day"}
TIERS = {
    "tiers": {
        "anonymous": {**LIMITS, "history_size": 0, "storage_quota_bytes": 0},
        "free": {**LIMITS, "history_size": FREE_HISTORY, "storage_quota_bytes": 1024**3},
        "pro": {
            **LIMITS,
            "rate_limit": "1200/minute",
            "history_size": 10000,
            "storage_quota_bytes": 20 * 1024**3,
        },
    }
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, auth_emulator: AuthEmulator) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("library-through-gateway")
    tiers = tmp / "tiers.yaml"
    tiers.write_text(yaml.safe_dump(TIERS))
    running = start_stack(
        tmp,
        workers=1,
        common_env={**auth_emulator.env(), "TIERS_FILE": str(tiers)},
        library_env={"BILLING_WEBHOOK_AUTHORIZATION": BILLING_SECRET},
    )
    yield running
    running.stop()


@dataclass
class Person:
    uid: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def person(auth_emulator: AuthEmulator) -> Person:
    email = f"library-{secrets.token_hex(4)}@example.com"
    uid = auth_emulator.sign_up(email)["localId"]
    return Person(uid=uid, email=email, token=auth_emulator.sign_in(email)["idToken"])


def snap(stack: Stack, who: Person | None, **headers: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/snaps",
        files={"image": ("p.jpg", photo(640, 480), "image/jpeg")},
        data={"template": "social_post", "count": "2"},
        headers={**(who.headers if who else {}), **headers},
        timeout=60,
    )


def owner_uploads(stack: Stack, uid: str) -> list[dict[str, Any]]:
    """What upload-svc holds for this person (asked directly, as library-svc does)."""
    answer = requests.get(f"{stack.upload.url}/internal/owners/{uid}/uploads", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["uploads"]


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if name:
            found.append((name, json.loads(data)))
    return found


def test_a_signed_in_snap_is_in_the_history_and_the_change_feed(
    stack: Stack, person: Person
) -> None:
    answer = snap(stack, person)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    snap_id = body["snap_id"]
    assert snap_id

    history = requests.get(f"{stack.url}/v1/snaps", headers=person.headers, timeout=10)
    assert history.status_code == 200, history.text
    page = history.json()
    assert [item["id"] for item in page["snaps"]] == [snap_id]
    assert page["snaps"][0]["upload"]["id"] == body["upload"]["id"]
    assert page["snaps"][0]["ideas"] == body["ideas"]
    assert page["next_page_token"] is None

    one = requests.get(f"{stack.url}/v1/snaps/{snap_id}", headers=person.headers, timeout=10)
    assert one.status_code == 200
    assert one.json()["preset"]["template"] == "social_post"

    feed = requests.get(f"{stack.url}/v1/sync/changes", headers=person.headers, timeout=10)
    assert feed.status_code == 200, feed.text
    changes = feed.json()["changes"]
    assert [(c["kind"], c["op"], c["id"]) for c in changes] == [("snap", "upsert", snap_id)]


def test_a_streamed_signed_in_snap_is_recorded_before_done(stack: Stack, person: Person) -> None:
    answer = snap(stack, person, Accept="text/event-stream")
    assert answer.status_code == 200, answer.text
    told = events(answer.text)
    assert [name for name, _ in told][-1] == "done"
    done = told[-1][1]
    assert done["snap_id"]
    history = requests.get(f"{stack.url}/v1/snaps", headers=person.headers, timeout=10).json()
    assert [item["id"] for item in history["snaps"]] == [done["snap_id"]]
    assert history["snaps"][0]["upload"]["id"] == told[0][1]["id"]


def test_anonymous_callers_get_no_library_and_their_snaps_are_not_recorded(
    stack: Stack,
) -> None:
    listed = requests.get(f"{stack.url}/v1/snaps", timeout=10)
    assert listed.status_code == 401
    assert listed.json()["error"]["code"] == "sign_in_required"
    assert listed.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/v1/me", "/v1/sync/changes", f"/v1/drafts/{uuid.uuid4()}"):
        assert requests.get(f"{stack.url}{path}", timeout=10).status_code == 401

    before = library_requests(stack)
    answer = snap(stack, None)
    assert answer.status_code == 201
    assert "snap_id" not in answer.json()
    time.sleep(0.3)
    assert library_requests(stack) == before


def library_requests(stack: Stack) -> int:
    assert stack.library is not None
    return sum(
        1
        for record in stack.library.managed.log_records()
        if record.get("event") == "request" and str(record.get("path", "")).startswith("/internal")
    )


def test_internal_routes_are_not_reachable_from_outside(stack: Stack, person: Person) -> None:
    for path in ("/internal/admission", "/internal/snaps"):
        for headers in ({}, person.headers):
            answer = requests.post(
                f"{stack.url}{path}", json={"bytes": 1}, headers=headers, timeout=10
            )
            assert answer.status_code == 404, (path, answer.text)


def test_drafts_need_if_match_and_a_stale_one_gets_the_current_draft(
    stack: Stack, person: Person
) -> None:
    url = f"{stack.url}/v1/drafts/{uuid.uuid4()}"
    created = requests.put(url, json={"title": "A", "body": "one"}, headers=person.headers)
    assert created.status_code == 201, created.text
    first = created.headers["ETag"]
    assert created.json()["etag"] == first

    missing = requests.patch(url, json={"title": "B"}, headers=person.headers, timeout=10)
    assert missing.status_code == 428
    assert missing.json()["error"]["code"] == "precondition_required"

    changed = requests.patch(
        url, json={"title": "B"}, headers={**person.headers, "If-Match": first}, timeout=10
    )
    assert changed.status_code == 200, changed.text
    second = changed.headers["ETag"]
    assert second != first

    stale = requests.patch(
        url, json={"title": "C"}, headers={**person.headers, "If-Match": first}, timeout=10
    )
    assert stale.status_code == 412
    error = stale.json()["error"]
    assert error["code"] == "precondition_failed"
    assert error["details"]["current"]["title"] == "B"
    assert error["details"]["current"]["etag"] == second
    assert stale.headers["ETag"] == second

    revisions = requests.get(f"{url}/revisions", headers=person.headers, timeout=10).json()
    assert [item["rev"] for item in revisions["revisions"]] == [2, 1]
    restored = requests.post(
        f"{url}/revisions/1:restore", headers={**person.headers, "If-Match": second}, timeout=10
    )
    assert restored.status_code == 200, restored.text
    assert restored.json()["title"] == "A"
    fresh = requests.get(url, headers={**person.headers, "If-None-Match": restored.headers["ETag"]})
    assert fresh.status_code == 304


def test_a_full_history_refuses_the_snap_and_stores_nothing(stack: Stack, person: Person) -> None:
    for _ in range(FREE_HISTORY):
        assert snap(stack, person).status_code == 201
    kept = owner_uploads(stack, person.uid)
    assert len(kept) == FREE_HISTORY

    refused = snap(stack, person)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "history_limit_reached"
    assert error["details"] == {"limit": FREE_HISTORY, "used": FREE_HISTORY, "tier": "free"}
    assert owner_uploads(stack, person.uid) == kept
    streamed = snap(stack, person, Accept="text/event-stream")
    assert streamed.status_code == 403
    assert owner_uploads(stack, person.uid) == kept


def remaining(answer: requests.Response) -> int:
    return int(answer.headers["X-RateLimit-Remaining"])


def test_deleting_the_account_clears_the_person_everywhere(
    stack: Stack, person: Person, auth_emulator: AuthEmulator
) -> None:
    made = snap(stack, person)
    assert made.status_code == 201
    upload_id = made.json()["upload"]["id"]
    presets = f"{stack.url}/v1/presets"
    for _ in range(3):
        counted = requests.get(presets, headers=person.headers, timeout=10)
    assert remaining(counted) == 600 - 4  # the snap and three presets

    deleted = requests.delete(f"{stack.url}/v1/me", headers=person.headers, timeout=60)
    assert deleted.status_code == 204, deleted.text

    assert auth_emulator.lookup(person.uid) is None
    assert owner_uploads(stack, person.uid) == []
    photo_answer = requests.get(
        f"{stack.url}/v1/uploads/{upload_id}", headers=person.headers, timeout=10
    )
    assert photo_answer.status_code == 404
    # The counters were forgotten: the next counted call starts a fresh window.
    assert remaining(photo_answer) == 600 - 1

    for method, path in (("GET", "/v1/me"), ("GET", "/v1/snaps"), ("GET", "/v1/sync/changes")):
        later = requests.request(method, f"{stack.url}{path}", headers=person.headers, timeout=10)
        assert later.status_code == 410, (path, later.text)
        assert later.json()["error"]["code"] == "account_deleted"
    again = snap(stack, person)
    assert again.status_code == 410
    assert again.json()["error"]["code"] == "account_deleted"
    assert owner_uploads(stack, person.uid) == []


def purchase(uid: str, event_id: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "api_version": "1.0",
        "event": {
            "id": event_id,
            "type": "INITIAL_PURCHASE",
            "app_user_id": uid,
            "product_id": "ideasnap_pro_monthly",
            "entitlement_ids": ["pro"],
            "purchased_at_ms": now,
            "event_timestamp_ms": now,
            "expiration_at_ms": now + 30 * 24 * 3600 * 1000,
            "store": "APP_STORE",
            "transaction_id": f"txn-{event_id}",
            "price": 4.99,
            "currency": "EUR",
        },
    }


def test_a_billing_event_through_the_gateway_makes_the_person_pro(
    stack: Stack, person: Person, auth_emulator: AuthEmulator
) -> None:
    url = f"{stack.url}/v1/billing/events"
    me = requests.get(f"{stack.url}/v1/me", headers=person.headers, timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["tier"] == "free"

    wrong = requests.post(
        url, json=purchase(person.uid, str(uuid.uuid4())), headers={"Authorization": "Bearer no"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_webhook_authorization"
    assert requests.get(f"{stack.url}/v1/me", headers=person.headers).json()["tier"] == "free"

    applied = requests.post(
        url,
        json=purchase(person.uid, str(uuid.uuid4())),
        headers={"Authorization": BILLING_SECRET},
        timeout=30,
    )
    assert applied.status_code == 200, applied.text
    me = requests.get(f"{stack.url}/v1/me", headers=person.headers, timeout=10).json()
    assert me["tier"] == "pro"
    assert me["features"]["ads"] is False
    # library-svc set the claim, so a fresh token carries the pro tier's limits.
    fresh = auth_emulator.sign_in(person.email)["idToken"]
    limited = requests.get(
        f"{stack.url}/v1/presets", headers={"Authorization": f"Bearer {fresh}"}, timeout=10
    )
    assert limited.headers["X-RateLimit-Limit"] == "1200"


def test_the_contract_documents_the_library_routes(stack: Stack) -> None:
    document = requests.get(f"{stack.url}/openapi.json", timeout=10).json()
    paths = document["paths"]
    assert paths["/v1/snaps"]["get"]["security"] == [{"FirebaseIdToken": []}]
    assert "/v1/drafts/{draft_id}/revisions/{rev}:restore" in paths
    assert paths["/v1/billing/events"]["post"]["security"] == []
    assert not any(path.startswith("/internal") for path in paths)
