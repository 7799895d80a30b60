"""Idempotency-Key: a retried POST returns the first answer instead of running twice."""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from gateway.idempotency import DigestingInput
from testbed.images import photo
from tests.gateway.conftest import Upstreams

pytestmark = pytest.mark.integration

APP_KEY = "k-0123456789abcdef-mobile"
PARTNER_KEY = "k-fedcba9876543210-partner"


def multipart(image: bytes, fields: dict[str, str], boundary: str) -> bytes:
    """A multipart body as an app builds it; each rebuild has a new boundary."""
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    out.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
    )
    out.write(image)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue()


def post_snap(
    client: FlaskClient, image: bytes, key: str | None, *, count: str = "2", **headers: str
) -> object:
    boundary = f"----app-{secrets.token_hex(8)}"
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        "/v1/snaps",
        data=multipart(image, {"template": "social_post", "count": count}, boundary),
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=headers,
    )


def stored_uploads(upstreams: Upstreams) -> set[str]:
    if not upstreams.storage.exists():
        return set()
    # An upload is a directory holding its original, under anonymous/ or owners/<owner>/.
    return {path.parent.name for path in upstreams.storage.rglob("original")}


def replays() -> float:
    return REGISTRY.get_sample_value("gateway_idempotent_replays_total") or 0.0


def test_a_retried_snap_returns_the_first_answer(
    make_app: Callable[..., Flask], upstreams: Upstreams
) -> None:
    # A quota of one snap a day: the retry after it must still get its answer.
    client = make_app(ai_daily_quota="1/day").test_client()
    image = photo(480, 360)
    key = secrets.token_hex(16)
    before_uploads, before_replays = stored_uploads(upstreams), replays()

    first = post_snap(client, image, key)
    assert first.status_code == 201, first.json
    assert "Idempotency-Replayed" not in first.headers
    # The retry is a new multipart body (new boundary) with the same content.
    retry = post_snap(client, image, key)
    assert retry.status_code == 201
    assert retry.headers["Idempotency-Replayed"] == "true"
    assert retry.data == first.data
    assert retry.headers["X-Request-ID"] != first.headers["X-Request-ID"]

    new = stored_uploads(upstreams) - before_uploads
    assert new == {first.json["upload"]["id"]}, "the retry stored a second upload"
    assert replays() - before_replays == 1
    # The quota was charged once; a new snap is over it.
    again = post_snap(client, image, None)
    assert again.status_code == 429
    assert again.json["error"]["code"] == "quota_exceeded"


def test_the_same_key_with_another_body_is_refused(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    key = secrets.token_hex(16)
    assert post_snap(client, photo(320, 240), key).status_code == 201
    other_image = post_snap(client, photo(320, 240, colour=(10, 200, 90)), key)
    assert other_image.status_code == 422
    assert other_image.json["error"]["code"] == "idempotency_key_reused"
    other_preset = post_snap(client, photo(320, 240), key, count="3")
    assert other_preset.status_code == 422


def test_keys_are_per_client_and_per_route(
    make_app: Callable[..., Flask], upstreams: Upstreams, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{APP_KEY}:mobile-app\n{PARTNER_KEY}:partner\n")
    client = make_app(api_keys_file=keys).test_client()
    image = photo(320, 240)
    key = "shared-key-0001"
    before = stored_uploads(upstreams)
    mine = post_snap(client, image, key, **{"X-API-Key": APP_KEY})
    theirs = post_snap(client, image, key, **{"X-API-Key": PARTNER_KEY})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotency-Replayed" not in theirs.headers
    assert mine.json["upload"]["id"] != theirs.json["upload"]["id"]
    # The same key on another route is another request.
    upload = client.post(
        "/v1/uploads",
        data={"image": (io.BytesIO(image), "p.jpg")},
        content_type="multipart/form-data",
        headers={"X-API-Key": APP_KEY, "Idempotency-Key": key},
    )
    assert upload.status_code == 201
    assert "Idempotency-Replayed" not in upload.headers
    assert len(stored_uploads(upstreams) - before) == 3


def test_uploads_and_ideas_are_idempotent_too(
    make_app: Callable[..., Flask], upstreams: Upstreams
) -> None:
    client = make_app().test_client()
    image = photo(320, 240)
    before = stored_uploads(upstreams)
    answers = [
        client.post(
            "/v1/uploads",
            data={"image": (io.BytesIO(image), "p.jpg")},
            content_type="multipart/form-data",
            headers={"Idempotency-Key": "upload-1"},
        )
        for _ in range(2)
    ]
    assert [answer.status_code for answer in answers] == [201, 201]
    assert answers[1].headers["Idempotency-Replayed"] == "true"
    assert answers[1].headers["Location"] == answers[0].headers["Location"]
    assert answers[1].json == answers[0].json
    assert len(stored_uploads(upstreams) - before) == 1

    upload_id = answers[0].json["id"]
    ideas = [
        client.post(
            "/v1/ideas",
            json={"upload_id": upload_id, "count": 2},
            headers={"Idempotency-Key": "ideas-1"},
        )
        for _ in range(2)
    ]
    assert [answer.status_code for answer in ideas] == [200, 200]
    assert ideas[1].headers["Idempotency-Replayed"] == "true"
    assert ideas[1].json == ideas[0].json


def test_a_failed_first_attempt_frees_the_key(bare_app: Callable[..., Flask]) -> None:
    client = bare_app().test_client()  # nothing behind: every attempt is a 503
    first = post_snap(client, photo(160, 120), "retry-me")
    second = post_snap(client, photo(160, 120), "retry-me")
    assert (first.status_code, second.status_code) == (503, 503)
    assert "Idempotency-Replayed" not in second.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey"])
def test_malformed_keys_are_refused(bare_app: Callable[..., Flask], key: str) -> None:
    client = bare_app().test_client()
    response = client.post(
        "/v1/ideas", json={"upload_id": "0" * 32}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_idempotency_key"


def test_the_body_digest_ignores_chunking_and_the_boundary() -> None:
    image = photo(200, 150)
    one = multipart(image, {"tone": "calm"}, "----boundary-one-aaaa")
    two = multipart(image, {"tone": "calm"}, "----other-boundary-bb")

    def digest(body: bytes, boundary: str, chunk: int) -> str:
        reader = DigestingInput(io.BytesIO(body), boundary.encode())
        while reader.read(chunk):
            pass
        return reader.hexdigest()

    digests = {
        digest(one, "----boundary-one-aaaa", 7),
        digest(one, "----boundary-one-aaaa", 4096),
        digest(two, "----other-boundary-bb", 1),
        digest(two, "----other-boundary-bb", 65536),
    }
    assert len(digests) == 1
    changed = multipart(image[:-1] + b"\x00", {"tone": "calm"}, "----boundary-one-aaaa")
    assert digest(changed, "----boundary-one-aaaa", 4096) not in digests
