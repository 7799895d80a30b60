"""Private photos: an upload made by a signed-in person is theirs alone, on both backends.

The requests carry ``X-IdeaSnap-User`` / ``X-IdeaSnap-Tier`` as the gateway sends them
after verifying a token; no header is anonymous.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from testbed import corpus
from tests.upload_svc.conftest import Service, SettingsFactory, s3_client
from upload_svc.app import create_app

ALICE = "alice-Uid_01"
BOB = "bob-uid-02"
NOBODY = "0" * 32
PRIVATE = "private, max-age=86400, immutable"
PUBLIC = "public, max-age=86400, immutable"


def person(uid: str, tier: str = "free") -> dict[str, str]:
    return {"X-IdeaSnap-User": uid, "X-IdeaSnap-Tier": tier}


ANONYMOUS: dict[str, str] = {}


def upload(client: FlaskClient, headers: dict[str, str], data: bytes | None = None) -> dict:
    answer = client.post(
        "/v1/uploads",
        data={"image": (io.BytesIO(data or corpus.small_jpeg()), "p.jpg")},
        content_type="multipart/form-data",
        headers=headers,
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def owner_dir(uid: str) -> str:
    return f"owners/{hashlib.sha256(uid.encode()).hexdigest()}"


def reads(upload_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v1/uploads/{upload_id}"),
        ("GET", f"/v1/uploads/{upload_id}/thumbnail"),
        ("GET", f"/internal/uploads/{upload_id}/preview"),
        ("GET", f"/internal/uploads/{upload_id}/preview?long_side=200"),
        ("GET", f"/internal/uploads/{upload_id}"),
        ("DELETE", f"/v1/uploads/{upload_id}"),
    ]


def answer_shape(answer: TestResponse) -> tuple[int, str, str, str | None]:
    error = answer.get_json()["error"]
    return answer.status_code, error["code"], error["message"], answer.headers.get("ETag")


def test_owner_reads_their_upload_privately(service: Service) -> None:
    record = upload(service.client, person(ALICE))
    assert record["owner"] == ALICE
    assert service.stored_keys() == sorted(
        f"{owner_dir(ALICE)}/{record['id']}/{name}"
        for name in ("original", "preview-768.jpg", "thumbnail-320.jpg")
    )
    for method, path in reads(record["id"])[:4]:
        answer = service.client.open(path, method=method, headers=person(ALICE))
        assert answer.status_code == 200, path
        assert answer.headers["Cache-Control"] == PRIVATE, path
        assert "X-IdeaSnap-User" in answer.headers["Vary"]
    again = service.client.get(
        record["urls"]["image"], headers={**person(ALICE), "If-None-Match": f'"{record["sha256"]}"'}
    )
    assert again.status_code == 304
    assert again.headers["Cache-Control"] == PRIVATE
    # The tier does not decide ownership: a pro Alice is still Alice.
    assert (
        service.client.get(record["urls"]["image"], headers=person(ALICE, "pro")).status_code == 200
    )


@pytest.mark.parametrize("other", [person(BOB), ANONYMOUS, person(ALICE.upper())])
def test_anyone_else_gets_the_answer_of_a_missing_id(
    service: Service, other: dict[str, str]
) -> None:
    record = upload(service.client, person(ALICE))
    upload_id = record["id"]
    for (method, path), (_, missing_path) in zip(reads(upload_id), reads(NOBODY), strict=True):
        answer = service.client.open(path, method=method, headers=other)
        missing = service.client.open(missing_path, method=method, headers=other)
        assert answer.status_code == 404, (method, path)
        assert answer_shape(answer) == answer_shape(missing), (method, path)
        assert answer.get_json()["error"]["code"] == "upload_not_found"
    # Knowing the ETag does not help either: no 304 to confirm the id exists.
    probe = service.client.get(
        record["urls"]["image"], headers={**other, "If-None-Match": f'"{record["sha256"]}"'}
    )
    assert probe.status_code == 404
    # Nothing was removed by the refused DELETE.
    assert service.client.get(record["urls"]["image"], headers=person(ALICE)).status_code == 200
    assert len(service.stored_keys()) == 3


def test_anonymous_uploads_stay_readable_by_id_and_publicly_cacheable(service: Service) -> None:
    record = upload(service.client, ANONYMOUS)
    assert record["owner"] is None
    assert service.stored_keys()[0].startswith(f"anonymous/{record['id']}/")
    for headers in (ANONYMOUS, person(BOB)):
        answer = service.client.get(record["urls"]["image"], headers=headers)
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == PUBLIC
        assert "Vary" not in answer.headers or "X-IdeaSnap-User" not in answer.headers["Vary"]
    assert service.client.delete(record["urls"]["image"], headers=person(BOB)).status_code == 204
    assert service.stored_keys() == []


def test_owner_deletes_their_upload(service: Service) -> None:
    record = upload(service.client, person(ALICE))
    upload(service.client, person(BOB))
    assert service.client.delete(record["urls"]["image"], headers=person(ALICE)).status_code == 204
    assert not [key for key in service.stored_keys() if key.startswith(owner_dir(ALICE))]
    assert len(service.stored_keys()) == 3  # Bob's
    assert service.client.get(record["urls"]["image"], headers=person(ALICE)).status_code == 404


def test_a_forged_header_value_owns_nothing(service: Service) -> None:
    """A malformed user header is anonymous (chassis.caller): it cannot reach owned uploads."""
    record = upload(service.client, person(ALICE))
    forged = {"X-IdeaSnap-User": f"{ALICE} ", "X-IdeaSnap-Tier": "pro"}
    assert service.client.get(record["urls"]["image"], headers=forged).status_code == 404


def test_presigned_redirect_only_for_the_owner(
    make_s3_settings: SettingsFactory, moto_endpoint: str, s3_bucket: str
) -> None:
    client = create_app(make_s3_settings(s3_presign_redirect=True)).test_client()
    record = upload(client, person(ALICE))
    for path in (record["urls"]["image"], record["urls"]["thumbnail"]):
        for other in (person(BOB), ANONYMOUS):
            refused = client.get(path, headers=other)
            assert refused.status_code == 404
            assert "Location" not in refused.headers
        redirect = client.get(path, headers=person(ALICE))
        assert redirect.status_code == 307
        assert redirect.headers["Cache-Control"].startswith("private")
        direct = requests.get(redirect.headers["Location"], timeout=5)
        assert direct.status_code == 200
        # A cache between the client and the bucket must not keep an owned image either.
        assert direct.headers["Cache-Control"] == PRIVATE
    head = s3_client(moto_endpoint).head_object(
        Bucket=s3_bucket, Key=f"{owner_dir(ALICE)}/{record['id']}/original"
    )
    assert json.loads(head["Metadata"]["record"])["owner"] == ALICE


# --- the owner routes library-svc calls -------------------------------------------------


def owned(client: FlaskClient, uid: str) -> dict[str, Any]:
    answer = client.get(f"/internal/owners/{uid}/uploads")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_listing_an_owners_uploads_with_their_sizes(service: Service) -> None:
    mine = [
        upload(service.client, person(ALICE), corpus.phone_photo(300 + 40 * n, 200, noise=5))
        for n in range(3)
    ]
    upload(service.client, person(BOB))
    upload(service.client, ANONYMOUS)
    service.client.get(
        f"/internal/uploads/{mine[0]['id']}/preview?long_side=100", headers=person(ALICE)
    )
    listing = owned(service.client, ALICE)
    assert listing["owner"] == ALICE
    assert listing["count"] == 3
    by_id = {item["id"]: item for item in listing["uploads"]}
    assert set(by_id) == {record["id"] for record in mine}
    for record in mine:
        assert by_id[record["id"]]["size"] == record["size"]
        assert by_id[record["id"]]["stored_bytes"] > record["size"]  # with its renditions
    assert listing["size"] == sum(record["size"] for record in mine)
    assert listing["stored_bytes"] == sum(item["stored_bytes"] for item in listing["uploads"])
    times = [item["stored_at"] for item in listing["uploads"]]
    assert times == sorted(times, reverse=True)
    assert owned(service.client, BOB)["count"] == 1
    nobody = owned(service.client, "never-uploaded")
    assert (nobody["count"], nobody["size"], nobody["stored_bytes"], nobody["uploads"]) == (
        0,
        0,
        0,
        [],
    )


def test_deleting_everything_of_one_owner_is_repeatable(service: Service) -> None:
    mine = [upload(service.client, person(ALICE)) for _ in range(2)]
    service.client.get(
        f"/internal/uploads/{mine[0]['id']}/preview?long_side=90", headers=person(ALICE)
    )
    theirs = upload(service.client, person(BOB))
    anonymous = upload(service.client, ANONYMOUS)
    answer = service.client.delete(f"/internal/owners/{ALICE}/uploads")
    assert answer.status_code == 200
    assert answer.get_json() == {"owner": ALICE, "deleted_uploads": 2, "deleted_objects": 7}
    assert not [key for key in service.stored_keys() if key.startswith(owner_dir(ALICE))]
    for record in mine:
        assert service.client.get(record["urls"]["image"], headers=person(ALICE)).status_code == 404
    assert owned(service.client, ALICE)["count"] == 0
    again = service.client.delete(f"/internal/owners/{ALICE}/uploads")
    assert again.status_code == 200
    assert again.get_json() == {"owner": ALICE, "deleted_uploads": 0, "deleted_objects": 0}
    assert service.client.get(theirs["urls"]["image"], headers=person(BOB)).status_code == 200
    assert service.client.get(anonymous["urls"]["image"]).status_code == 200


@pytest.mark.parametrize("uid", ["has space", "x" * 129, "semi;colon"])
def test_owner_routes_refuse_a_malformed_uid(client: FlaskClient, uid: str) -> None:
    for method in ("GET", "DELETE"):
        answer = client.open(f"/internal/owners/{uid}/uploads", method=method)
        assert answer.status_code == 400
        assert answer.get_json()["error"]["code"] == "invalid_owner"
