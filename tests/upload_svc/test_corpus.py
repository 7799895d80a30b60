"""The hostile corpus through the HTTP API, on both storage backends.

Every file gets its documented answer (docs/uploads.md), never a 5xx; an accepted one
comes back clean (no EXIF, XMP or IPTC, nothing the payload smuggled in) and upright;
a refused one leaves nothing in storage and nothing in the spool directory.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask import Flask
from PIL import Image

from testbed import corpus
from tests.upload_svc.conftest import SettingsFactory, bucket_keys, local_files, spool_files
from upload_svc.app import create_app
from upload_svc.settings import UploadSettings

LIMIT = 10 * 1024 * 1024
CASES = corpus.hostile_corpus(LIMIT)
TRANSPORTS = [
    pytest.param("local", "multipart", id="local-multipart"),
    pytest.param("local", "raw", id="local-raw"),
    pytest.param("s3", "multipart", id="s3-multipart"),
]


@pytest.fixture
def service(
    request: pytest.FixtureRequest, make_settings: SettingsFactory
) -> tuple[Flask, UploadSettings, Callable[[], list[str]]]:
    backend = request.param
    if backend == "local":
        settings = make_settings()
        return create_app(settings), settings, lambda: local_files(settings.storage_dir)
    settings = request.getfixturevalue("make_s3_settings")()
    endpoint = request.getfixturevalue("moto_endpoint")
    return create_app(settings), settings, lambda: bucket_keys(endpoint, settings.s3_bucket or "")


def check_accepted(client: object, case: corpus.Case, record: dict) -> None:
    assert record["content_type"] == case.stored_type
    image = client.get(record["urls"]["image"])  # type: ignore[attr-defined]
    assert image.status_code == 200
    assert image.headers["Content-Type"] == case.stored_type
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    data = image.data
    for secret in case.absent:
        assert secret not in data, secret
    with Image.open(io.BytesIO(data)) as stored:
        assert Image.MIME[stored.format] == case.stored_type
        assert not stored.getexif(), "EXIF left in the stored image"
        assert "xmp" not in stored.info
        assert "XML:com.adobe.xmp" not in stored.info
        assert "photoshop" not in stored.info
        assert (stored.width, stored.height) == (record["width"], record["height"])
        if case.name.startswith(("jpeg orientation", "png orientation", "webp orientation")):
            colours = corpus.quadrant_colours(stored)
            for name, expected in corpus.QUADRANTS.items():
                assert corpus.close_colour(colours[name], expected), (name, colours)
    for path in (record["urls"]["thumbnail"], f"/internal/uploads/{record['id']}/preview"):
        rendition = client.get(path)  # type: ignore[attr-defined]
        assert rendition.status_code == 200
        with Image.open(io.BytesIO(rendition.data)) as picture:
            assert picture.format == "JPEG"
            assert not picture.getexif()


@pytest.mark.parametrize(("service", "transport"), TRANSPORTS, indirect=["service"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_corpus(
    service: tuple[Flask, UploadSettings, Callable[[], list[str]]],
    transport: str,
    case: corpus.Case,
) -> None:
    app, settings, stored = service
    client = app.test_client()
    data = case.make()
    if transport == "raw":
        response = client.post("/v1/uploads", data=data, content_type="application/octet-stream")
    else:
        response = client.post(
            "/v1/uploads",
            data={"image": (io.BytesIO(data), case.filename, case.content_type)},
            content_type="multipart/form-data",
        )
    assert response.status_code < 500
    assert response.status_code == case.status, response.get_json()
    body = response.get_json()
    if case.code is not None:
        assert body["error"]["code"] == case.code
        assert body["error"]["request_id"] == response.headers["X-Request-ID"]
        assert stored() == [], "a refused file left something in storage"
    else:
        check_accepted(client, case, body)
        assert client.delete(body["urls"]["image"]).status_code == 204
        assert stored() == []
    assert spool_files(settings) == []
