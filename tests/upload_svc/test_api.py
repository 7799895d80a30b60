"""The HTTP API through Flask's test client: records, reading back, caching, deleting,
limits while receiving, metrics and storage failures."""

from __future__ import annotations

import io
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from prometheus_client import REGISTRY
from werkzeug.test import TestResponse

from testbed import corpus
from tests.upload_svc.conftest import SettingsFactory, local_files, spool_files
from upload_svc.app import create_app

LIMIT = 10 * 1024 * 1024


def upload(client: FlaskClient, data: bytes, *, raw: bool = False, **extra: Any) -> TestResponse:
    if raw:
        return client.post("/v1/uploads", data=data, content_type="application/octet-stream")
    fields = {"image": (io.BytesIO(data), extra.pop("filename", "photo.jpg")), **extra}
    return client.post("/v1/uploads", data=fields, content_type="multipart/form-data")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_upload_answers_with_the_record(client: FlaskClient) -> None:
    photo = corpus.phone_photo(1200, 900, exif=corpus.private_exif().tobytes(), noise=10)
    response = upload(client, photo, filename="../../etc/passwd.jpg")
    assert response.status_code == 201
    record = response.get_json()
    assert set(record) >= {
        "id",
        "content_type",
        "size",
        "width",
        "height",
        "sha256",
        "created_at",
        "captured_at",
        "urls",
    }
    assert len(record["id"]) == 32
    assert "passwd" not in str(record)
    assert (record["width"], record["height"], record["content_type"]) == (1200, 900, "image/jpeg")
    assert record["captured_at"] == "2024-05-17T14:03:22"
    assert record["urls"] == {
        "image": f"/v1/uploads/{record['id']}",
        "thumbnail": f"/v1/uploads/{record['id']}/thumbnail",
    }
    assert response.headers["Location"] == record["urls"]["image"]
    assert client.get(f"/internal/uploads/{record['id']}").get_json() == record


def test_raw_body_upload_and_reading_it_back(client: FlaskClient) -> None:
    photo = corpus.phone_photo(640, 480, noise=10)
    record = upload(client, photo, raw=True).get_json()
    image = client.get(record["urls"]["image"])
    assert image.status_code == 200
    assert image.headers["Content-Type"] == "image/jpeg"
    assert image.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert image.headers["ETag"] == f'"{record["sha256"]}"'
    assert int(image.headers["Content-Length"]) == record["size"] == len(image.data)
    import hashlib

    assert hashlib.sha256(image.data).hexdigest() == record["sha256"]


def test_if_none_match_answers_304(client: FlaskClient) -> None:
    record = upload(client, corpus.small_jpeg()).get_json()
    for path in (record["urls"]["image"], record["urls"]["thumbnail"]):
        etag = client.get(path).headers["ETag"]
        for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            answer = client.get(path, headers={"If-None-Match": header})
            assert answer.status_code == 304, (path, header)
            assert answer.data == b""
            assert answer.headers["ETag"] == etag
            assert answer.headers["Cache-Control"] == "public, max-age=86400, immutable"
        assert client.get(path, headers={"If-None-Match": '"nope"'}).status_code == 200


def test_thumbnail_and_preview(client: FlaskClient) -> None:
    photo = corpus.phone_photo(2000, 1000, exif=corpus.private_exif(offset="+09:00").tobytes())
    record = upload(client, photo).get_json()
    thumbnail = client.get(record["urls"]["thumbnail"])
    assert thumbnail.headers["Content-Type"] == "image/jpeg"
    assert thumbnail.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(thumbnail.data)).size == (320, 160)
    preview = client.get(f"/internal/uploads/{record['id']}/preview")
    assert preview.status_code == 200
    assert Image.open(io.BytesIO(preview.data)).size == (768, 384)
    assert preview.headers["X-Upload-Sha256"] == record["sha256"]
    assert preview.headers["X-Upload-Captured-At"] == "2024-05-17T14:03:22+09:00"
    other = client.get(f"/internal/uploads/{record['id']}/preview?long_side=256")
    assert Image.open(io.BytesIO(other.data)).size == (256, 128)
    assert other.headers["ETag"] != preview.headers["ETag"]


def test_preview_without_capture_time_has_no_header(client: FlaskClient) -> None:
    record = upload(client, corpus.small_jpeg()).get_json()
    assert record["captured_at"] is None
    preview = client.get(f"/internal/uploads/{record['id']}/preview")
    assert "X-Upload-Captured-At" not in preview.headers


@pytest.mark.parametrize("value", ["10", "5000", "abc", "", "1e3"])
def test_preview_long_side_is_checked(client: FlaskClient, value: str) -> None:
    record = upload(client, corpus.small_jpeg()).get_json()
    answer = client.get(f"/internal/uploads/{record['id']}/preview?long_side={value}")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_long_side"


def test_stored_photo_has_no_gps_and_the_right_orientation(client: FlaskClient) -> None:
    record = upload(client, corpus.oriented(6)).get_json()
    stored = Image.open(io.BytesIO(client.get(record["urls"]["image"]).data))
    assert stored.size == (90, 60)
    assert not stored.getexif()
    assert not stored.getexif().get_ifd(0x8825)
    colours = corpus.quadrant_colours(stored)
    assert all(corpus.close_colour(colours[n], c) for n, c in corpus.QUADRANTS.items())


def test_delete_removes_the_image_and_everything_derived(
    client: FlaskClient, make_settings: SettingsFactory
) -> None:
    root = make_settings().storage_dir
    record = upload(client, corpus.small_jpeg()).get_json()
    client.get(f"/internal/uploads/{record['id']}/preview?long_side=100")
    assert len(local_files(root)) >= 8  # original, 3 renditions, their sidecars
    assert client.delete(record["urls"]["image"]).status_code == 204
    assert local_files(root) == []
    for path in (record["urls"]["image"], record["urls"]["thumbnail"]):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.get_json()["error"]["code"] == "upload_not_found"
    assert client.delete(record["urls"]["image"]).status_code == 404


@pytest.mark.parametrize(
    "upload_id", ["..%2F..%2Fetc", "ABCDEF0123456789ABCDEF0123456789", "123", "a" * 32 + "%0A"]
)
def test_unknown_or_malformed_ids_are_404(client: FlaskClient, upload_id: str) -> None:
    for method, path in (
        ("GET", f"/v1/uploads/{upload_id}"),
        ("GET", f"/v1/uploads/{upload_id}/thumbnail"),
        ("DELETE", f"/v1/uploads/{upload_id}"),
        ("GET", f"/internal/uploads/{upload_id}/preview"),
    ):
        answer = client.open(path, method=method)
        assert answer.status_code == 404, (method, path)
        assert answer.get_json()["error"]["code"] in ("upload_not_found", "not_found")


def test_multipart_extra_fields_and_parts_are_ignored(client: FlaskClient) -> None:
    photo = corpus.small_jpeg()
    response = client.post(
        "/v1/uploads",
        data={
            "template": "social_post",
            "image": (io.BytesIO(photo), "a.jpg"),
            "other": (io.BytesIO(b"<html>not this</html>"), "b.html"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    assert response.get_json()["size"] == len(photo)


def test_multipart_without_an_image(client: FlaskClient) -> None:
    answer = client.post("/v1/uploads", data={"file": (io.BytesIO(b"x"), "x.jpg")})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "missing_image"


def test_broken_multipart(client: FlaskClient) -> None:
    no_boundary = client.post("/v1/uploads", data=b"--x\r\n", content_type="multipart/form-data")
    assert no_boundary.get_json()["error"]["code"] == "invalid_multipart"
    cut = client.post(
        "/v1/uploads",
        data=b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\n\xff\xd8',
        content_type="multipart/form-data; boundary=xyz",
    )
    assert cut.status_code == 400
    assert cut.get_json()["error"]["code"] == "invalid_multipart"


class CountingStream(io.RawIOBase):
    """A request body that counts what the service read of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = offset + (self.size if whence == io.SEEK_END else 0)
        return self.position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.size - self.position)
        buffer[:count] = b"\0" * count
        self.position += count
        self.read_bytes += count
        return count


def test_a_body_declared_far_over_the_limit_is_refused_unread(client: FlaskClient) -> None:
    body = CountingStream(100 * LIMIT)
    answer = client.post(
        "/v1/uploads",
        input_stream=body,
        content_length=body.size,
        content_type="application/octet-stream",
    )
    assert answer.status_code == 413
    assert answer.get_json()["error"]["code"] == "payload_too_large"
    assert body.read_bytes == 0


def test_a_multipart_image_over_the_limit_is_refused(client: FlaskClient) -> None:
    answer = upload(client, corpus.padded_to(LIMIT + 1)())
    assert answer.status_code == 413
    assert answer.get_json()["error"]["details"] == {"limit_bytes": LIMIT}


def test_the_limit_is_configurable(make_settings: SettingsFactory) -> None:
    client = create_app(make_settings(max_upload_bytes=20_000)).test_client()
    photo = corpus.phone_photo(320, 240, noise=30)
    assert len(photo) > 20_000
    assert upload(client, photo).status_code == 413
    assert upload(client, photo, raw=True).status_code == 413
    assert upload(client, corpus.phone_photo(50, 50)).status_code == 201


def test_receiving_a_10_mb_upload_stays_far_below_twice_its_size(
    client: FlaskClient, tmp_path: Path
) -> None:
    """Python-heap peak while a 10 MB photo is received and processed (tracemalloc).

    Pillow's pixel buffers live outside the Python heap; the gunicorn test measures the
    worker's whole resident memory instead.
    """
    photo = tmp_path / "big.jpg"
    photo.write_bytes(corpus.jpeg_near_size(LIMIT))
    size = photo.stat().st_size
    assert size > 9 * 1024 * 1024
    upload(client, corpus.small_jpeg())  # warm up imports and caches
    with photo.open("rb") as body:
        tracemalloc.start()
        try:
            answer = client.post(
                "/v1/uploads",
                input_stream=body,
                content_length=size,
                content_type="application/octet-stream",
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert answer.status_code == 201, answer.get_json()
    print(f"python heap peak for a {size} byte upload: {peak} bytes ({peak / size:.3f}x)")
    assert peak < 0.5 * size


def test_metrics_count_outcomes_bytes_stages_and_storage(client: FlaskClient) -> None:
    accepted = metric("upload_requests_total", outcome="accepted", code="none")
    rejected = metric("upload_requests_total", outcome="rejected", code="unsupported_media_type")
    received = metric("upload_received_bytes_count")
    received_sum = metric("upload_received_bytes_sum")
    stages = {
        stage: metric("upload_processing_duration_seconds_count", stage=stage)
        for stage in ("intake", "thumbnail", "preview")
    }
    puts = metric(
        "storage_operation_duration_seconds_count", backend="local", operation="put", outcome="ok"
    )
    photo = corpus.small_jpeg()
    upload(client, photo, raw=True)
    upload(client, b"<svg/>", raw=True)
    assert metric("upload_requests_total", outcome="accepted", code="none") == accepted + 1
    assert (
        metric("upload_requests_total", outcome="rejected", code="unsupported_media_type")
        == rejected + 1
    )
    assert metric("upload_received_bytes_count") == received + 2
    assert metric("upload_received_bytes_sum") == received_sum + len(photo) + 6
    for stage, before in stages.items():
        assert metric("upload_processing_duration_seconds_count", stage=stage) == before + 1
    after = metric(
        "storage_operation_duration_seconds_count", backend="local", operation="put", outcome="ok"
    )
    assert after == puts + 3  # original, preview, thumbnail


def test_storage_failure_is_503_and_leaves_nothing(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    app = create_app(settings)
    client = app.test_client()
    failed = metric("upload_requests_total", outcome="failed", code="storage_unavailable")
    errors = metric(
        "storage_operation_duration_seconds_count",
        backend="local",
        operation="put",
        outcome="error",
    )
    # The volume goes away under the service: its root is now a file, nothing can be made.
    settings.storage_dir.rmdir()
    settings.storage_dir.write_bytes(b"not a directory")
    answer = upload(client, corpus.small_jpeg())
    ready = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "storage_unavailable"
    assert answer.headers["Retry-After"] == "5"
    assert ready.status_code == 503
    assert ready.get_json()["error"]["details"]["checks"] == {"storage": "failed"}
    assert metric("upload_requests_total", outcome="failed", code="storage_unavailable") == (
        failed + 1
    )
    assert (
        metric(
            "storage_operation_duration_seconds_count",
            backend="local",
            operation="put",
            outcome="error",
        )
        == errors + 1
    )
    assert settings.storage_dir.read_bytes() == b"not a directory"
    assert spool_files(settings) == []


def test_busy_when_every_decode_slot_is_taken(make_settings: SettingsFactory) -> None:
    app: Flask = create_app(make_settings(intake_concurrency=1, intake_wait_seconds=0.2))
    slots = app.extensions["uploads"].decode_slots
    assert slots.acquire()
    try:
        answer = upload(app.test_client(), corpus.small_jpeg())
    finally:
        slots.release()
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "busy"
    assert answer.headers["Retry-After"] == "2"
    assert upload(app.test_client(), corpus.small_jpeg()).status_code == 201


def test_concurrent_uploads_get_distinct_records(client: FlaskClient) -> None:
    photos = [corpus.phone_photo(300, 200, seed=index, noise=10) for index in range(6)]
    records: list[dict[str, Any]] = []

    def send(photo: bytes) -> None:
        records.append(upload(client, photo).get_json())

    threads = [threading.Thread(target=send, args=(photo,)) for photo in photos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({record["id"] for record in records}) == 6
    assert len({record["sha256"] for record in records}) == 6


def test_no_temporary_files_are_left(client: FlaskClient, make_settings: SettingsFactory) -> None:
    upload(client, corpus.phone_photo(800, 600, noise=40))
    upload(client, b"garbage")
    upload(client, corpus.padded_to(LIMIT + 1)(), raw=True)
    assert spool_files(make_settings()) == []
    assert not [name for name in local_files(make_settings().storage_dir) if ".tmp-" in name]
