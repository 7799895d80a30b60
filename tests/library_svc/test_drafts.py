"""Drafts and versions over the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from flask.testing import FlaskClient

from tests.library_svc.conftest import AppFactory, who


def new_id() -> str:
    return str(uuid.uuid4())


def create(client: FlaskClient, uid: str, draft_id: str, **content: object):
    return client.put(
        f"/v1/drafts/{draft_id}", json={"title": "t", "body": "b", **content}, headers=who(uid)
    )


def revisions(client: FlaskClient, uid: str, draft_id: str) -> list[dict]:
    answer = client.get(f"/v1/drafts/{draft_id}/revisions?page_size=100", headers=who(uid))
    assert answer.status_code == 200, answer.json
    return answer.json["revisions"]


def test_anonymous_callers_must_sign_in(client: FlaskClient) -> None:
    answer = client.put(f"/v1/drafts/{new_id()}", json={"title": "x"})
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "sign_in_required"


def test_put_creates_once_and_a_replay_creates_nothing(client: FlaskClient, uid: str) -> None:
    draft_id = new_id()
    first = create(client, uid, draft_id)
    assert first.status_code == 201
    assert first.headers["ETag"] == '"v1"' == first.json["etag"]
    replay = create(client, uid, draft_id)
    assert replay.status_code == 200
    assert replay.json == first.json
    assert len(revisions(client, uid, draft_id)) == 1
    fetched = client.get(f"/v1/drafts/{draft_id}", headers=who(uid))
    assert fetched.json["title"] == "t"
    assert fetched.headers["ETag"] == '"v1"'
    not_modified = client.get(
        f"/v1/drafts/{draft_id}", headers={**who(uid), "If-None-Match": '"v1"'}
    )
    assert not_modified.status_code == 304


def test_drafts_are_private_to_their_owner(client: FlaskClient, uid: str) -> None:
    draft_id = new_id()
    create(client, uid, draft_id)
    assert client.get(f"/v1/drafts/{draft_id}", headers=who("someone-else")).status_code == 404


def test_a_change_needs_if_match_and_a_stale_one_gets_the_current_draft(
    client: FlaskClient, uid: str
) -> None:
    draft_id = new_id()
    create(client, uid, draft_id)
    url = f"/v1/drafts/{draft_id}"
    missing = client.patch(url, json={"body": "new"}, headers=who(uid))
    assert missing.status_code == 428
    assert missing.json["error"]["code"] == "precondition_required"
    star = client.patch(url, json={"body": "new"}, headers={**who(uid), "If-Match": "*"})
    assert star.status_code == 428

    changed = client.patch(url, json={"body": "new"}, headers={**who(uid), "If-Match": '"v1"'})
    assert changed.status_code == 200
    assert changed.json["body"] == "new"
    assert changed.headers["ETag"] == '"v2"'

    stale = client.patch(url, json={"body": "lost"}, headers={**who(uid), "If-Match": '"v1"'})
    assert stale.status_code == 412
    error = stale.json["error"]
    assert error["code"] == "precondition_failed"
    assert error["details"]["current"]["body"] == "new"
    assert error["details"]["current"]["etag"] == '"v2"'
    assert stale.headers["ETag"] == '"v2"'

    different_put = create(client, uid, draft_id, body="replaced")
    assert different_put.status_code == 428
    replaced = client.put(
        url, json={"title": "t", "body": "replaced"}, headers={**who(uid), "If-Match": '"v2"'}
    )
    assert replaced.status_code == 200
    assert replaced.json["version"] == 3
    assert [r["body"] for r in revisions(client, uid, draft_id)] == ["replaced", "new", "b"]


def test_autosaves_fold_into_one_revision_within_the_window(make_app: AppFactory, uid: str) -> None:
    client = make_app(autosave_window_seconds=3600).test_client()
    draft_id = new_id()
    create(client, uid, draft_id)
    etag = '"v1"'
    for text in ("h", "he", "hel", "hell", "hello"):
        answer = client.patch(
            f"/v1/drafts/{draft_id}",
            json={"body": text, "autosave": True},
            headers={**who(uid), "If-Match": etag},
        )
        assert answer.status_code == 200
        etag = answer.json["etag"]
    kept = revisions(client, uid, draft_id)
    assert [(r["kind"], r["body"], r["saves"]) for r in kept] == [
        ("autosave", "hello", 5),
        ("save", "b", 1),
    ]
    saved = client.patch(
        f"/v1/drafts/{draft_id}", json={"title": "final"}, headers={**who(uid), "If-Match": etag}
    )
    assert saved.status_code == 200
    assert len(revisions(client, uid, draft_id)) == 3


def test_autosaves_outside_the_window_make_new_revisions(make_app: AppFactory, uid: str) -> None:
    client = make_app(autosave_window_seconds=0).test_client()
    draft_id = new_id()
    create(client, uid, draft_id)
    etag = '"v1"'
    for text in ("a", "ab", "abc"):
        answer = client.patch(
            f"/v1/drafts/{draft_id}",
            json={"body": text, "autosave": True},
            headers={**who(uid), "If-Match": etag},
        )
        etag = answer.json["etag"]
    assert [r["body"] for r in revisions(client, uid, draft_id)] == ["abc", "ab", "a", "b"]


def test_revisions_page_and_restore_is_a_new_revision(client: FlaskClient, uid: str) -> None:
    draft_id = new_id()
    create(client, uid, draft_id, body="0")
    etag = '"v1"'
    for number in range(1, 7):
        etag = client.patch(
            f"/v1/drafts/{draft_id}",
            json={"body": str(number)},
            headers={**who(uid), "If-Match": etag},
        ).json["etag"]
    seen, token = [], None
    while True:
        query = f"page_size=3&page_token={token}" if token else "page_size=3"
        page = client.get(f"/v1/drafts/{draft_id}/revisions?{query}", headers=who(uid)).json
        seen += [r["rev"] for r in page["revisions"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]

    restored = client.post(
        f"/v1/drafts/{draft_id}/revisions/2:restore", headers={**who(uid), "If-Match": etag}
    )
    assert restored.status_code == 200, restored.json
    assert restored.json["body"] == "1"
    latest = revisions(client, uid, draft_id)[0]
    assert (latest["rev"], latest["kind"], latest["restored_from"], latest["body"]) == (
        8,
        "restore",
        2,
        "1",
    )
    stale = client.post(
        f"/v1/drafts/{draft_id}/revisions/2:restore", headers={**who(uid), "If-Match": etag}
    )
    assert stale.status_code == 412
    unknown = client.post(
        f"/v1/drafts/{draft_id}/revisions/99:restore",
        headers={**who(uid), "If-Match": restored.json["etag"]},
    )
    assert unknown.status_code == 404
    assert unknown.json["error"]["code"] == "revision_not_found"


def test_tampered_revision_page_token_is_400(client: FlaskClient, uid: str) -> None:
    draft_id = new_id()
    create(client, uid, draft_id)
    etag = '"v1"'
    for number in range(3):
        etag = client.patch(
            f"/v1/drafts/{draft_id}",
            json={"body": str(number)},
            headers={**who(uid), "If-Match": etag},
        ).json["etag"]
    token = client.get(f"/v1/drafts/{draft_id}/revisions?page_size=1", headers=who(uid)).json[
        "next_page_token"
    ]
    body, signature = token.split(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    for bad in (tampered, "nonsense", token + "x"):
        answer = client.get(f"/v1/drafts/{draft_id}/revisions?page_token={bad}", headers=who(uid))
        assert answer.status_code == 400
        assert answer.json["error"]["code"] == "invalid_page_token"
    other = client.get(
        f"/v1/drafts/{draft_id}/revisions?page_token={token}", headers=who("other-person")
    )
    assert other.status_code == 404


def test_delete_needs_the_etag_and_leaves_a_gone_draft(client: FlaskClient, uid: str) -> None:
    draft_id = new_id()
    create(client, uid, draft_id)
    url = f"/v1/drafts/{draft_id}"
    assert client.delete(url, headers=who(uid)).status_code == 428
    assert client.delete(url, headers={**who(uid), "If-Match": '"v9"'}).status_code == 412
    assert client.delete(url, headers={**who(uid), "If-Match": '"v1"'}).status_code == 204
    gone = client.get(url, headers=who(uid))
    assert gone.status_code == 410
    assert gone.json["error"]["code"] == "draft_deleted"
    assert create(client, uid, draft_id).status_code == 410
    patched = client.patch(url, json={"body": "x"}, headers={**who(uid), "If-Match": '"v1"'})
    assert patched.status_code == 410


def test_bad_bodies_get_clear_errors(make_app: AppFactory, uid: str) -> None:
    client = make_app(max_draft_bytes=1024).test_client()
    url = f"/v1/drafts/{new_id()}"
    too_big = client.put(url, json={"body": "x" * 2000}, headers=who(uid))
    assert too_big.status_code == 413
    assert too_big.json["error"]["code"] == "payload_too_large"
    assert too_big.json["error"]["details"]["limit"] == 1024
    not_json = client.put(url, data=b"{", headers={**who(uid), "Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json["error"]["code"] == "invalid_json"
    unknown = client.put(url, json={"colour": "red"}, headers=who(uid))
    assert unknown.status_code == 422
    assert unknown.json["error"]["details"]["field"] == "colour"
    wrong_type = client.put(url, json={"title": 5}, headers=who(uid))
    assert wrong_type.status_code == 422
    bad_id = client.put("/v1/drafts/not-a-uuid", json={}, headers=who(uid))
    assert bad_id.status_code == 400
    assert bad_id.json["error"]["code"] == "invalid_draft_id"
    form = client.put(url, data="title=x", headers={**who(uid), "Content-Type": "text/plain"})
    assert form.status_code == 415


def test_an_if_match_naming_no_version_is_stale_not_an_error(client: FlaskClient, uid: str) -> None:
    draft_id = str(uuid.uuid4())
    assert create(client, uid, draft_id, title="A").status_code == 201
    url = f"/v1/drafts/{draft_id}"
    for header in ('W/"x", ""', '""', '"v²"', '"x"'):
        for method in ("DELETE", "PATCH"):
            answer = client.open(
                url,
                method=method,
                json={"title": "B"} if method == "PATCH" else None,
                headers={**who(uid), "If-Match": header},
            )
            assert answer.status_code == 412, (method, header, answer.json)
            assert answer.json["error"]["details"]["current"]["title"] == "A"
