"""History and admission over the API, on SQLite and PostgreSQL, with the real upload-svc."""

from __future__ import annotations

from pathlib import Path

import requests
from flask.testing import FlaskClient

from testbed.processes import Service
from tests.library_svc.conftest import AppFactory, fake_upload, snap_record, store_photo, who


def record(client: FlaskClient, uid: str, upload: dict):
    return client.post("/internal/snaps", json=snap_record(upload), headers=who(uid))


def test_a_recorded_snap_is_in_history_once(
    client: FlaskClient, uid: str, upload_svc: Service
) -> None:
    upload = store_photo(upload_svc, uid)
    first = record(client, uid, upload)
    assert first.status_code == 201, first.json
    snap = first.json
    assert snap["upload"]["id"] == upload["id"]
    assert snap["upload"]["size"] == upload["size"]
    assert snap["upload"]["urls"]["image"] == f"/v1/uploads/{upload['id']}"
    assert snap["preset"]["template"] == "social_post"
    assert snap["ideas"][0]["title"] == "One"
    assert (snap["provider"], snap["model"]) == ("local", "local-1")
    assert snap["usage"] == {"input_tokens": 10, "output_tokens": 20}
    replay = record(client, uid, upload)
    assert replay.status_code == 200
    assert replay.json["id"] == snap["id"]
    listed = client.get("/v1/snaps", headers=who(uid)).json
    assert [item["id"] for item in listed["snaps"]] == [snap["id"]]
    assert client.get(f"/v1/snaps/{snap['id']}", headers=who(uid)).json == snap
    assert client.get(f"/v1/snaps/{snap['id']}", headers=who("stranger")).status_code == 404


def test_history_pages_newest_first_and_tokens_are_tamper_evident(
    client: FlaskClient, uid: str
) -> None:
    made = [record(client, uid, fake_upload(number)).json["id"] for number in range(7)]
    seen, token = [], None
    while True:
        query = f"page_size=3&page_token={token}" if token else "page_size=3"
        page = client.get(f"/v1/snaps?{query}", headers=who(uid)).json
        seen += [item["id"] for item in page["snaps"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == list(reversed(made))

    token = client.get("/v1/snaps?page_size=2", headers=who(uid)).json["next_page_token"]
    body, signature = token.split(".")
    flipped = body[:5] + ("x" if body[5] != "x" else "y") + body[6:]
    for bad in (f"{flipped}.{signature}", "abc", f"{body}.{signature[:-1]}"):
        answer = client.get(f"/v1/snaps?page_token={bad}", headers=who(uid))
        assert answer.status_code == 400
        assert answer.json["error"]["code"] == "invalid_page_token"
    stolen = client.get(f"/v1/snaps?page_token={token}", headers=who("someone-else"))
    assert stolen.status_code == 400
    too_big = client.get("/v1/snaps?page_size=1000", headers=who(uid))
    assert too_big.status_code == 400
    assert too_big.json["error"]["code"] == "invalid_page_size"


def test_deleting_a_snap_removes_its_photo_too(
    client: FlaskClient, uid: str, upload_svc: Service
) -> None:
    upload = store_photo(upload_svc, uid)
    snap = record(client, uid, upload).json
    photo_url = f"{upload_svc.url}/v1/uploads/{upload['id']}"
    assert requests.get(photo_url, headers=who(uid), timeout=10).status_code == 200
    assert client.delete(f"/v1/snaps/{snap['id']}", headers=who("stranger")).status_code == 404
    assert client.delete(f"/v1/snaps/{snap['id']}", headers=who(uid)).status_code == 204
    assert requests.get(photo_url, headers=who(uid), timeout=10).status_code == 404
    assert client.get(f"/v1/snaps/{snap['id']}", headers=who(uid)).status_code == 404
    assert client.get("/v1/snaps", headers=who(uid)).json["snaps"] == []


def test_deleting_a_snap_while_upload_svc_is_down_is_503_and_keeps_it(
    make_app: AppFactory, uid: str
) -> None:
    from testbed.processes import free_port

    client = make_app(upload_svc_url=f"http://127.0.0.1:{free_port()}").test_client()
    snap = record(client, uid, fake_upload(1)).json
    answer = client.delete(f"/v1/snaps/{snap['id']}", headers=who(uid))
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "upstream_unavailable"
    assert client.get(f"/v1/snaps/{snap['id']}", headers=who(uid)).status_code == 200


def small_tiers(tmp_path: Path) -> Path:
    path = tmp_path / "tiers.yaml"
    path.write_text(
        "tiers:\n"
        + "".join(
            f"  {name}: {{rate_limit: 60/minute, ai_rate_limit: 10/minute, "
            f"ai_daily_quota: 100/day, history_size: {size}, storage_quota_bytes: {quota}}}\n"
            for name, size, quota in (("anonymous", 0, 0), ("free", 2, 5000), ("pro", 100, 1000000))
        )
    )
    return path


def test_admission_enforces_the_tier_limits(
    make_app: AppFactory, uid: str, tmp_path: Path, upload_svc: Service
) -> None:
    """Storage used is what upload-svc keeps for the person; history size is library-svc's."""
    client = make_app(tiers_file=small_tiers(tmp_path)).test_client()
    admit = lambda size: client.post(  # noqa: E731
        "/internal/admission", json={"bytes": size}, headers=who(uid)
    )
    assert admit(1000).status_code == 204
    over_quota = admit(5001)
    assert over_quota.status_code == 403
    assert over_quota.json["error"]["code"] == "storage_quota_exceeded"
    assert over_quota.json["error"]["details"] == {"limit": 5000, "used": 0, "tier": "free"}
    first = store_photo(upload_svc, uid, 64, 48)
    record(client, uid, first)
    used = first["size"]
    assert 0 < used < 5000
    partly = admit(5000 - used + 1)
    assert partly.status_code == 403
    assert partly.json["error"]["details"]["used"] == used
    assert admit(5000 - used).status_code == 204
    record(client, uid, store_photo(upload_svc, uid, 64, 48))
    full = admit(1)
    assert full.status_code == 403
    assert full.json["error"]["code"] == "history_limit_reached"
    assert full.json["error"]["details"] == {"limit": 2, "used": 2, "tier": "free"}
    assert admit(-1).status_code == 422
    assert client.post("/internal/admission", json={"bytes": 1}).status_code == 401


def test_default_tiers_are_the_documented_numbers(app) -> None:
    tiers = app.extensions["tiers"]
    assert (tiers["free"].history_size, tiers["free"].storage_quota_bytes) == (200, 1024**3)
    assert (tiers["pro"].history_size, tiers["pro"].storage_quota_bytes) == (10000, 20 * 1024**3)
