"""The snap's multipart body as the gateway takes it apart: what it keeps, what it refuses.

Every refusal must come before anything reaches upload-svc: a snap whose body is
malformed, too large or cut off midway stores nothing and costs upload-svc no request.
The in-process app calls the real services; the cut-off client runs against gunicorn.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from testbed.images import photo
from testbed.metrics import total
from testbed.processes import Service
from tests.gateway.conftest import Upstreams
from tests.gateway.test_idempotency import stored_uploads

pytestmark = pytest.mark.integration

REQUESTS = "http_server_request_duration_seconds_count"


def part(
    name: str, data: bytes, boundary: str, filename: str | None = None, **headers: str
) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    lines += [f"{header.replace('_', '-')}: {value}" for header, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data + b"\r\n"


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def new_boundary() -> str:
    return f"----form-{secrets.token_hex(8)}"


def distinct_photo() -> bytes:
    """A small JPEG no other test sent (ai-svc caches ideas per image)."""
    shade = secrets.randbelow(200)
    return photo(320, 240, colour=(shade, 255 - shade, secrets.randbelow(256)))


def post(client: FlaskClient, body: bytes, boundary: str, **headers: str) -> object:
    return client.post(
        "/v1/snaps",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=headers,
    )


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(rate_limit_enabled=False).test_client()


@pytest.fixture
def untouched(upstreams: Upstreams) -> Iterator[None]:
    """The test's requests send upload-svc nothing and leave nothing in its storage."""
    before = total(upstreams.upload.metrics_url, REQUESTS, method="POST")
    stored = stored_uploads(upstreams)
    yield
    assert total(upstreams.upload.metrics_url, REQUESTS, method="POST") == before
    assert stored_uploads(upstreams) == stored


def test_extra_fields_and_parts_do_not_change_the_answer(
    client: FlaskClient, upstreams: Upstreams
) -> None:
    image = distinct_photo()
    boundary = new_boundary()
    body = (
        b"A preamble, which RFC 2046 says to ignore.\r\n"
        + part("note", b"not a field the snap reads", boundary)
        + part(
            "thumbnail", b"\xff\xd8 another file", boundary, "small.jpg", Content_Type="image/jpeg"
        )
        + part("template", b"social_post", boundary)
        + part("tone", b"friendly", boundary, Content_Type="text/plain; charset=utf-8")
        + part("image", image, boundary, "photo.jpg", Content_Type="image/jpeg")
        + part("image", b"a second image is not the photo", boundary, "second.jpg")
        + part("template", b"a repeated field keeps its first value", boundary)
        + part("count", b"2", boundary)
        + closing(boundary)
        + b"an epilogue, also ignored"
    )
    answer = post(client, body, boundary)
    assert answer.status_code == 201, answer.get_json()
    snap = answer.get_json()
    assert snap["upload"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert snap["upload"]["size"] == len(image)
    assert snap["preset"]["template"] == "social_post"
    assert snap["preset"]["tone"] == "friendly"
    assert len(snap["ideas"]) == 2
    assert snap["upload"]["id"] in stored_uploads(upstreams)

    # The plain form (what the app sends) with the same photo: the same preset and ideas.
    boundary = new_boundary()
    plain = (
        part("template", b"social_post", boundary)
        + part("tone", b"friendly", boundary)
        + part("count", b"2", boundary)
        + part("image", image, boundary, "photo.jpg", Content_Type="image/jpeg")
        + closing(boundary)
    )
    again = post(client, plain, boundary)
    assert again.status_code == 201, again.get_json()
    per_upload = {"upload", "upload_id", "cached"}
    assert {key: value for key, value in again.get_json().items() if key not in per_upload} == {
        key: value for key, value in snap.items() if key not in per_upload
    }
    assert again.get_json()["upload"]["sha256"] == snap["upload"]["sha256"]


@pytest.mark.usefixtures("untouched")
def test_a_malformed_or_cut_off_form_is_missing_image_and_nothing_is_sent_on(
    client: FlaskClient,
) -> None:
    image = distinct_photo()
    boundary = new_boundary()
    whole = part("template", b"social_post", boundary) + part(
        "image", image, boundary, "photo.jpg", Content_Type="image/jpeg"
    )
    forms = {
        "not multipart at all": b"just some bytes",
        "no closing boundary": whole,
        "cut off in the image": (whole + closing(boundary))[: len(whole) // 2],
        "cut off in the part headers": whole[: whole.index(b"Content-Type")],
        "a part without Content-Disposition": f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        "x\r\n".encode()
        + whole
        + closing(boundary),
        "no image field": part("template", b"social_post", boundary) + closing(boundary),
        "the image as a text field": part("image", b"\xff\xd8 bytes", boundary) + closing(boundary),
        "an empty body": b"",
        "only the closing boundary": closing(boundary),
    }
    for name, body in forms.items():
        answer = post(client, body, boundary)
        assert answer.status_code == 400, name
        error = answer.get_json()["error"]
        assert error["code"] == "missing_image", name
        assert error["request_id"] == answer.headers["X-Request-ID"], name

    no_boundary = client.post("/v1/snaps", data=whole, content_type="multipart/form-data")
    assert no_boundary.status_code == 400
    assert no_boundary.get_json()["error"]["code"] == "missing_image"

    # The body ends before its declared length (the phone went away mid-photo).
    body = whole + closing(boundary)
    short = client.post(
        "/v1/snaps",
        input_stream=io.BytesIO(body[: len(body) - 200]),
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(body)),
        },
    )
    assert short.status_code == 400
    assert short.get_json()["error"]["code"] == "missing_image"

    bad_count = post(
        client,
        part("count", b"three", boundary)
        + part("image", image, boundary, "photo.jpg")
        + closing(boundary),
        boundary,
    )
    assert bad_count.status_code == 422
    assert bad_count.get_json()["error"]["code"] == "invalid_request"

    json_body = client.post("/v1/snaps", json={"image": "x"})
    assert json_body.status_code == 415
    assert json_body.get_json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.usefixtures("untouched")
def test_forms_past_the_limits_are_413_before_anything_is_sent_on(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app(rate_limit_enabled=False, max_upload_bytes=400_000).test_client()
    image = distinct_photo()
    boundary = new_boundary()
    photo_part = part("image", image, boundary, "photo.jpg", Content_Type="image/jpeg")
    forms = {
        "33 parts": b"".join(part(f"field{index}", b"v", boundary) for index in range(32))
        + photo_part
        + closing(boundary),
        "a text field over 256 KiB": part("template", b"t" * (256 * 1024 + 1), boundary)
        + photo_part
        + closing(boundary),
        "part headers over 256 KiB": part(
            "image", image, boundary, "photo.jpg", X_Padding="p" * (256 * 1024)
        )
        + closing(boundary),
        "a photo over the upload limit": part(
            "image", image + b"\0" * 400_000, boundary, "photo.jpg"
        )
        + closing(boundary),
        "a preamble over 256 KiB": b"p" * (256 * 1024 + 1) + photo_part + closing(boundary),
        "a body over the body limit": part("image", b"\0" * 500_000, boundary, "photo.jpg")
        + closing(boundary),
    }
    for name, body in forms.items():
        answer = post(client, body, boundary)
        assert answer.status_code == 413, name
        assert answer.get_json()["error"]["code"] == "payload_too_large", name


def test_32_parts_are_still_a_form(client: FlaskClient) -> None:
    boundary = new_boundary()
    body = (
        b"".join(part(f"field{index}", b"v", boundary) for index in range(31))
        + part("image", distinct_photo(), boundary, "photo.jpg", Content_Type="image/jpeg")
        + closing(boundary)
    )
    answer = post(client, body, boundary)
    assert answer.status_code == 201, answer.get_json()


def refused_snaps(gateway: Service) -> float:
    return total(gateway.metrics_url, REQUESTS, method="POST", status="400")


def test_a_client_that_goes_away_mid_photo_leaves_nothing_behind(
    start_gateways: Callable[..., list[Service]], upstreams: Upstreams
) -> None:
    (gateway,) = start_gateways(RATE_LIMIT_ENABLED="false")
    image = distinct_photo()
    boundary = new_boundary()
    body = (
        part("template", b"social_post", boundary)
        + part("image", image, boundary, "photo.jpg", Content_Type="image/jpeg")
        + closing(boundary)
    )
    before = total(upstreams.upload.metrics_url, REQUESTS, method="POST")
    stored = stored_uploads(upstreams)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/snaps HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
    deadline = time.monotonic() + 20
    while refused_snaps(gateway) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker answers once it sees the connection close
    assert refused_snaps(gateway) == 1

    # Chunked, and cut off by the limit midway through the photo.
    def chunks() -> Iterator[bytes]:
        yield part("image", b"", boundary, "photo.jpg")[:-2]
        for _ in range(48):
            yield b"\xff" * (256 * 1024)

    try:
        too_big = requests.post(
            f"{gateway.url}/v1/snaps",
            data=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=30,
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
    except requests.ConnectionError:
        pass  # the gateway may close before the client finished sending: also refused

    # The worker answers the next snap, and that is the only one upload-svc saw.
    whole = requests.post(
        f"{gateway.url}/v1/snaps",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert whole.status_code == 201, whole.text
    assert whole.json()["upload"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert total(upstreams.upload.metrics_url, REQUESTS, method="POST") == before + 1
    assert stored_uploads(upstreams) == stored | {whole.json()["upload"]["id"]}
