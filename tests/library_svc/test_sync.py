"""The change feed and the documented offline algorithm, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask.testing import FlaskClient

from tests.library_svc.conftest import AppFactory, fake_upload, snap_record, who


class Device:
    """An app install following library-svc/README.md's sync algorithm."""

    def __init__(self, client: FlaskClient, uid: str) -> None:
        self.client, self.uid = client, uid
        self.cursor: str | None = None
        self.drafts: dict[str, dict[str, Any]] = {}
        self.snaps: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, dict[str, Any]] = {}

    def pull(self, page_size: int = 100) -> list[dict[str, Any]]:
        received = []
        while True:
            query = f"page_size={page_size}" + (f"&cursor={self.cursor}" if self.cursor else "")
            answer = self.client.get(f"/v1/sync/changes?{query}", headers=who(self.uid))
            assert answer.status_code == 200, answer.json
            page = answer.json
            for item in page["changes"]:
                store = self.drafts if item["kind"] == "draft" else self.snaps
                if item["op"] == "delete":
                    store.pop(item["id"], None)
                else:
                    store[item["id"]] = item["data"]
            received += page["changes"]
            self.cursor = page["next_cursor"]
            if not page["has_more"]:
                return received

    def edit_offline(self, draft_id: str, body: str) -> None:
        self.pending[draft_id] = {"body": body}
        self.drafts[draft_id] = {**self.drafts[draft_id], "body": body}

    def push(self) -> None:
        for draft_id, change in list(self.pending.items()):
            known = self.drafts[draft_id]
            answer = self.client.patch(
                f"/v1/drafts/{draft_id}",
                json=change,
                headers={**who(self.uid), "If-Match": known["etag"]},
            )
            if answer.status_code in (412, 410):
                copy_id = str(uuid.uuid4())
                copy = self.client.put(
                    f"/v1/drafts/{copy_id}",
                    json={
                        "title": f"{known['title']} (conflict copy)",
                        "body": change["body"],
                        "snap_id": known.get("snap_id"),
                    },
                    headers=who(self.uid),
                )
                assert copy.status_code == 201
                if answer.status_code == 412:
                    self.drafts[draft_id] = answer.json["error"]["details"]["current"]
                else:
                    self.drafts.pop(draft_id, None)
                self.drafts[copy_id] = copy.json
            else:
                assert answer.status_code == 200, answer.json
                self.drafts[draft_id] = answer.json
            del self.pending[draft_id]


def test_an_offline_edit_to_a_draft_deleted_elsewhere_ends_as_tombstone_and_conflict_copy(
    client: FlaskClient, uid: str
) -> None:
    draft_id = str(uuid.uuid4())
    client.put(f"/v1/drafts/{draft_id}", json={"title": "Trip", "body": "v1"}, headers=who(uid))
    phone, tablet = Device(client, uid), Device(client, uid)
    phone.pull()
    tablet.pull()
    assert phone.drafts[draft_id]["body"] == "v1"

    phone.edit_offline(draft_id, "written on the plane")
    deleted = client.delete(
        f"/v1/drafts/{draft_id}",
        headers={**who(uid), "If-Match": tablet.drafts[draft_id]["etag"]},
    )
    assert deleted.status_code == 204
    phone.push()
    changes = phone.pull()

    assert draft_id not in phone.drafts
    tombstones = [c for c in changes if c["op"] == "delete"]
    assert [(c["kind"], c["id"]) for c in tombstones] == [("draft", draft_id)]
    [copy] = phone.drafts.values()
    assert copy["title"] == "Trip (conflict copy)"
    assert copy["body"] == "written on the plane"

    tablet.pull()
    assert tablet.drafts == phone.drafts


def test_an_offline_edit_that_lost_a_race_keeps_both_versions(
    client: FlaskClient, uid: str
) -> None:
    draft_id = str(uuid.uuid4())
    client.put(f"/v1/drafts/{draft_id}", json={"title": "Plan", "body": "v1"}, headers=who(uid))
    phone, tablet = Device(client, uid), Device(client, uid)
    phone.pull()
    tablet.pull()
    phone.edit_offline(draft_id, "phone text")
    tablet.edit_offline(draft_id, "tablet text")
    tablet.push()
    phone.push()
    phone.pull()
    tablet.pull()
    bodies = sorted(draft["body"] for draft in phone.drafts.values())
    assert bodies == ["phone text", "tablet text"]
    assert phone.drafts[draft_id]["body"] == "tablet text"
    assert tablet.drafts == phone.drafts


def test_a_thousand_changes_arrive_once_each_in_order(client: FlaskClient, uid: str) -> None:
    made = []
    for number in range(1000):
        if number % 2:
            draft_id = str(uuid.uuid4())
            client.put(f"/v1/drafts/{draft_id}", json={"body": str(number)}, headers=who(uid))
            made.append(("draft", draft_id))
        else:
            answer = client.post(
                "/internal/snaps", json=snap_record(fake_upload(number)), headers=who(uid)
            )
            made.append(("snap", answer.json["id"]))
    device = Device(client, uid)
    pages = []
    while True:
        before = len(pages)
        query = "page_size=100" + (f"&cursor={device.cursor}" if device.cursor else "")
        page = client.get(f"/v1/sync/changes?{query}", headers=who(uid)).json
        pages.append(page["changes"])
        device.cursor = page["next_cursor"]
        assert len(pages) == before + 1
        if not page["has_more"]:
            break
    received = [change for page in pages for change in page]
    assert [len(page) for page in pages] == [100] * 10
    assert [(c["kind"], c["id"]) for c in received] == made
    seqs = [c["seq"] for c in received]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 1000
    again = client.get(f"/v1/sync/changes?cursor={device.cursor}", headers=who(uid)).json
    assert again["changes"] == []
    assert again["has_more"] is False


def test_an_object_changed_twice_appears_once_at_its_latest_change(
    client: FlaskClient, uid: str
) -> None:
    draft_id = str(uuid.uuid4())
    client.put(f"/v1/drafts/{draft_id}", json={"body": "a"}, headers=who(uid))
    device = Device(client, uid)
    device.pull()
    client.patch(
        f"/v1/drafts/{draft_id}", json={"body": "b"}, headers={**who(uid), "If-Match": '"v1"'}
    )
    client.patch(
        f"/v1/drafts/{draft_id}", json={"body": "c"}, headers={**who(uid), "If-Match": '"v2"'}
    )
    changes = device.pull()
    assert [(c["id"], c["data"]["body"]) for c in changes] == [(draft_id, "c")]


def test_a_cursor_older_than_the_tombstone_window_needs_a_full_resync(
    make_app: AppFactory, uid: str
) -> None:
    client = make_app(tombstone_retention_seconds=1).test_client()
    draft_id = str(uuid.uuid4())
    client.put(f"/v1/drafts/{draft_id}", json={"body": "a"}, headers=who(uid))
    device = Device(client, uid)
    device.pull()
    old_cursor = device.cursor
    client.delete(f"/v1/drafts/{draft_id}", headers={**who(uid), "If-Match": '"v1"'})
    fresh = client.get(f"/v1/sync/changes?cursor={old_cursor}", headers=who(uid))
    assert [c["op"] for c in fresh.json["changes"]] == ["delete"]
    time.sleep(1.2)
    stale = client.get(f"/v1/sync/changes?cursor={old_cursor}", headers=who(uid))
    assert stale.status_code == 410
    assert stale.json["error"]["code"] == "full_resync_required"
    restart = Device(client, uid)
    restart.pull()
    assert restart.drafts == {}


def test_a_tampered_cursor_is_400(client: FlaskClient, uid: str) -> None:
    client.put(f"/v1/drafts/{uuid.uuid4()}", json={"body": "a"}, headers=who(uid))
    cursor = client.get("/v1/sync/changes", headers=who(uid)).json["next_cursor"]
    body, signature = cursor.split(".")
    for bad in (f"{body}x.{signature}", "garbage", f"{body}.{signature[::-1]}"):
        answer = client.get(f"/v1/sync/changes?cursor={bad}", headers=who(uid))
        assert answer.status_code == 400
        assert answer.json["error"]["code"] == "invalid_cursor"
    assert client.get(f"/v1/sync/changes?cursor={cursor}", headers=who("other")).status_code == 400
