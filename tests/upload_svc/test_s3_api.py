"""upload-svc on the S3 backend (moto's S3 server): the same API, presigned redirects,
and a defined answer when the bucket is unreachable or too slow."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest
import requests
from PIL import Image

from testbed import corpus
from tests.upload_svc.conftest import SettingsFactory, bucket_keys, s3_client
from upload_svc.app import create_app


def upload(client: object, data: bytes) -> dict:
    response = client.post(  # type: ignore[attr-defined]
        "/v1/uploads",
        data={"image": (io.BytesIO(data), "p.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_upload_read_and_delete_through_s3(
    make_s3_settings: SettingsFactory, moto_endpoint: str, s3_bucket: str
) -> None:
    client = create_app(make_s3_settings(s3_prefix="media")).test_client()
    photo = corpus.phone_photo(800, 600, exif=corpus.private_exif().tobytes(), noise=20)
    record = upload(client, photo)
    upload_id = record["id"]
    assert bucket_keys(moto_endpoint, s3_bucket) == [
        f"media/anonymous/{upload_id}/original",
        f"media/anonymous/{upload_id}/preview-768.jpg",
        f"media/anonymous/{upload_id}/thumbnail-320.jpg",
    ]
    head = s3_client(moto_endpoint).head_object(
        Bucket=s3_bucket, Key=f"media/anonymous/{upload_id}/original"
    )
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "public, max-age=86400, immutable"
    assert json.loads(head["Metadata"]["record"])["sha256"] == record["sha256"]
    image = client.get(record["urls"]["image"])
    assert image.status_code == 200
    assert image.headers["ETag"] == f'"{record["sha256"]}"'
    assert len(image.data) == record["size"]
    assert corpus.SERIAL.encode() not in image.data
    assert client.get(record["urls"]["thumbnail"]).status_code == 200
    assert client.get(f"/internal/uploads/{upload_id}/preview?long_side=200").status_code == 200
    assert client.delete(record["urls"]["image"]).status_code == 204
    assert bucket_keys(moto_endpoint, s3_bucket) == []
    assert client.get(record["urls"]["image"]).status_code == 404


def test_presigned_redirects(make_s3_settings: SettingsFactory, moto_endpoint: str) -> None:
    port = moto_endpoint.rsplit(":", 1)[1]
    settings = make_s3_settings(
        s3_presign_redirect=True,
        s3_presign_ttl_seconds=120,
        s3_presign_endpoint_url=f"http://localhost:{port}",  # the name clients use
    )
    client = create_app(settings).test_client()
    record = upload(client, corpus.phone_photo(640, 480, noise=10))
    for path, content_type in (
        (record["urls"]["image"], "image/jpeg"),
        (record["urls"]["thumbnail"], "image/jpeg"),
    ):
        redirect = client.get(path)
        assert redirect.status_code == 307
        location = redirect.headers["Location"]
        assert location.startswith(f"http://localhost:{port}/")
        assert "X-Amz-Signature=" in location
        assert "X-Amz-Expires=120" in location
        assert redirect.headers["Cache-Control"] == "private, max-age=60"
        direct = requests.get(location, timeout=5)
        assert direct.status_code == 200
        assert direct.headers["Content-Type"] == content_type
        assert direct.headers["Cache-Control"] == "public, max-age=86400, immutable"
        Image.open(io.BytesIO(direct.content)).verify()
        assert "ETag" not in redirect.headers  # the object's own answer carries one
    stored = client.get(record["urls"]["image"], headers={"If-None-Match": f'"{record["sha256"]}"'})
    assert stored.status_code == 304
    preview = client.get(f"/internal/uploads/{record['id']}/preview")
    assert preview.status_code == 200  # ai-svc always gets the bytes
    assert client.get("/v1/uploads/" + "0" * 32).status_code == 404


def test_missing_thumbnail_is_made_before_redirecting(
    make_s3_settings: SettingsFactory, moto_endpoint: str, s3_bucket: str
) -> None:
    client = create_app(make_s3_settings(s3_presign_redirect=True)).test_client()
    record = upload(client, corpus.small_jpeg())
    s3_client(moto_endpoint).delete_object(
        Bucket=s3_bucket, Key=f"anonymous/{record['id']}/thumbnail-320.jpg"
    )
    redirect = client.get(record["urls"]["thumbnail"])
    assert redirect.status_code == 307
    assert requests.get(redirect.headers["Location"], timeout=5).status_code == 200


def test_unreachable_bucket_is_503_and_not_ready(make_s3_settings: SettingsFactory) -> None:
    from testbed.processes import free_port

    settings = make_s3_settings(
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_max_attempts=1,
        s3_connect_timeout_seconds=0.5,
    )
    client = create_app(settings).test_client()
    answer = client.post(
        "/v1/uploads", data=corpus.small_jpeg(), content_type="application/octet-stream"
    )
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "storage_unavailable"
    assert client.get("/v1/uploads/" + "a" * 32).status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: an S3 endpoint hung up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_hung_bucket_is_504_not_a_hang(
    make_s3_settings: SettingsFactory, silent_server: int
) -> None:
    settings = make_s3_settings(
        s3_endpoint_url=f"http://127.0.0.1:{silent_server}",
        s3_max_attempts=1,
        s3_read_timeout_seconds=0.5,
    )
    client = create_app(settings).test_client()
    answer = client.get("/v1/uploads/" + "b" * 32)
    assert answer.status_code == 504
    assert answer.get_json()["error"]["code"] == "storage_timeout"
