"""The storage contract, run against both backends: a directory and an S3 API server."""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.upload_svc.conftest import Backend, SettingsFactory
from upload_svc.storage import ObjectNotFound, StorageUnavailable
from upload_svc.storage.local import LocalStorage
from upload_svc.storage.s3 import S3Storage


class FailingSource(io.RawIOBase):
    """A body that breaks halfway, like a client that disconnects."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.sent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.sent >= self.good:
            raise OSError("connection lost")
        count = min(len(buffer), self.good - self.sent)
        buffer[:count] = b"x" * count
        self.sent += count
        return count


def test_put_then_get_returns_bytes_type_and_metadata(backend: Backend) -> None:
    data = os.urandom(300_000)
    backend.storage.put(
        "abc/original", io.BytesIO(data), content_type="image/png", metadata={"record": '{"a":1}'}
    )
    stored = backend.storage.get("abc/original")
    try:
        assert b"".join(stored.body) == data
    finally:
        stored.body.close()
    assert stored.info.size == len(data)
    assert stored.info.content_type == "image/png"
    assert stored.info.metadata["record"] == '{"a":1}'


def test_head_and_read_and_exists(backend: Backend) -> None:
    backend.storage.put("k1/thumbnail-320.jpg", io.BytesIO(b"jpeg"), content_type="image/jpeg")
    info = backend.storage.head("k1/thumbnail-320.jpg")
    assert (info.size, info.content_type) == (4, "image/jpeg")
    assert backend.storage.read("k1/thumbnail-320.jpg") == b"jpeg"
    assert backend.storage.exists("k1/thumbnail-320.jpg")
    assert not backend.storage.exists("k1/other")


def test_put_reads_from_the_current_position(backend: Backend) -> None:
    source = io.BytesIO(b"skipped|kept")
    source.seek(8)
    backend.storage.put("pos/x", source, content_type="text/plain")
    assert backend.storage.read("pos/x") == b"kept"


def test_missing_objects_raise_not_found(backend: Backend) -> None:
    for call in (backend.storage.get, backend.storage.head, backend.storage.read):
        with pytest.raises(ObjectNotFound):
            call("nothing/here")


def test_put_replaces_an_existing_object(backend: Backend) -> None:
    backend.storage.put("r/x", io.BytesIO(b"first"), content_type="text/plain")
    backend.storage.put("r/x", io.BytesIO(b"second!"), content_type="application/json")
    assert backend.storage.read("r/x") == b"second!"
    assert backend.storage.head("r/x").content_type == "application/json"


def test_delete_one_object(backend: Backend) -> None:
    backend.storage.put("d/x", io.BytesIO(b"1"), content_type="text/plain")
    assert backend.storage.delete("d/x") is True
    assert backend.storage.delete("d/x") is False
    assert not backend.storage.exists("d/x")
    assert backend.list_all() == []


def test_delete_prefix_removes_exactly_that_upload(backend: Backend) -> None:
    for key in ("abc/original", "abc/thumbnail-320.jpg", "abc/preview-768.jpg", "abcd/original"):
        backend.storage.put(key, io.BytesIO(key.encode()), content_type="text/plain")
    assert backend.storage.delete_prefix("abc") == 3
    assert backend.storage.exists("abcd/original")
    assert not backend.storage.exists("abc/original")
    assert backend.storage.delete_prefix("abc") == 0
    assert all(name.startswith(("abcd", ".abcd", "abcd/")) for name in backend.list_all())


def test_list_prefix_finds_every_object_below_with_size_and_time(backend: Backend) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    for key, size in (
        ("owners/h1/u1/original", 10),
        ("owners/h1/u1/thumbnail-320.jpg", 3),
        ("owners/h1/u2/original", 7),
        ("owners/h10/u3/original", 5),
        ("anonymous/u4/original", 4),
    ):
        backend.storage.put(key, io.BytesIO(b"x" * size), content_type="image/jpeg")
    listed = sorted(backend.storage.list_prefix("owners/h1"), key=lambda item: item.key)
    assert [(item.key, item.size) for item in listed] == [
        ("owners/h1/u1/original", 10),
        ("owners/h1/u1/thumbnail-320.jpg", 3),
        ("owners/h1/u2/original", 7),
    ]
    after = datetime.now(UTC) + timedelta(seconds=5)
    assert all(before <= item.modified <= after for item in listed)
    assert backend.storage.list_prefix("owners/nobody") == []
    assert backend.storage.delete_prefix("owners/h1") == 3
    assert backend.storage.list_prefix("owners/h1") == []
    assert [item.key for item in backend.storage.list_prefix("owners/h10")] == [
        "owners/h10/u3/original"
    ]


@pytest.mark.parametrize(
    "key", ["../escape", "/absolute", "a/../../b", "UPPER/x", "", ".hidden/x", "a//b", "a/b\n"]
)
def test_keys_that_could_escape_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        backend.storage.put(key, io.BytesIO(b"x"), content_type="text/plain")
    with pytest.raises(ValueError, match="invalid storage key"):
        backend.storage.get(key)
    assert backend.list_all() == []


def test_a_failed_write_leaves_nothing_behind(backend: Backend) -> None:
    with pytest.raises((OSError, StorageUnavailable)):
        backend.storage.put(
            "broken/original", FailingSource(good=200_000), content_type="image/jpeg"
        )
    assert not backend.storage.exists("broken/original")
    assert backend.list_all() == []


def test_a_failed_replacement_keeps_the_previous_object(backend: Backend) -> None:
    backend.storage.put("keep/x", io.BytesIO(b"old"), content_type="text/plain")
    with pytest.raises((OSError, StorageUnavailable)):
        backend.storage.put("keep/x", FailingSource(good=1000), content_type="text/plain")
    assert backend.storage.read("keep/x") == b"old"


def test_large_objects_stream_in_chunks(backend: Backend) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)
    backend.storage.put("big/original", io.BytesIO(data), content_type="image/jpeg")
    stored = backend.storage.get("big/original")
    chunks = list(stored.body)
    stored.body.close()
    assert b"".join(chunks) == data
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) <= 1024 * 1024


def test_cache_objects_read_back(backend: Backend) -> None:
    backend.storage.put(
        "c/preview-768.jpg", io.BytesIO(b"j"), content_type="image/jpeg", cache=True
    )
    assert backend.storage.read("c/preview-768.jpg") == b"j"


def test_readiness_check_passes(backend: Backend) -> None:
    backend.storage.check()
    assert backend.list_all() == []


def test_presigned_urls(backend: Backend) -> None:
    backend.storage.put("p/original", io.BytesIO(b"\xff\xd8image"), content_type="image/jpeg")
    url = backend.storage.presigned_url("p/original", 60)
    if backend.name == "local":
        assert url is None
        return
    assert url is not None
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200
    assert answer.content == b"\xff\xd8image"
    assert answer.headers["Content-Type"] == "image/jpeg"


# --- backend-specific behaviour -----------------------------------------------------------


def test_local_sweep_removes_what_a_crash_left(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("live/original", io.BytesIO(b"ok"), content_type="text/plain")
    crashed = tmp_path / "dead"
    crashed.mkdir()
    leftovers = [crashed / ".tmp-abc123", tmp_path / "live" / ".tmp-def456", crashed / ".x.meta"]
    for path in leftovers:
        path.write_bytes(b"partial")
    fresh = tmp_path / "live" / ".tmp-inflight"
    fresh.write_bytes(b"being written right now")
    old = time.time() - 7200
    for path in [*leftovers, crashed]:
        os.utime(path, (old, old))
    assert storage.sweep_stale(older_than_seconds=3600) == 3
    assert not crashed.exists()
    assert fresh.exists(), "a write in progress must not be swept"
    assert storage.read("live/original") == b"ok"


def test_local_damaged_cache_object_reads_as_missing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put(
        "u/preview-768.jpg", io.BytesIO(b"0123456789"), content_type="image/jpeg", cache=True
    )
    (tmp_path / "u" / "preview-768.jpg").write_bytes(b"")  # what a power cut can leave
    with pytest.raises(ObjectNotFound):
        storage.read("u/preview-768.jpg")


def test_local_storage_that_cannot_be_written_is_unavailable(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    (tmp_path / "root" / "taken").write_bytes(b"a file where a directory must go")
    with pytest.raises(StorageUnavailable):
        storage.put("taken/original", io.BytesIO(b"x"), content_type="text/plain")


def test_s3_prefix_places_keys_under_it(
    make_s3_settings: SettingsFactory, moto_endpoint: str
) -> None:
    from tests.upload_svc.conftest import bucket_keys

    settings = make_s3_settings(s3_prefix="/ideasnap/uploads/")
    storage = S3Storage(settings)
    storage.put("abc/original", io.BytesIO(b"x"), content_type="image/jpeg")
    assert bucket_keys(moto_endpoint, settings.s3_bucket or "") == ["ideasnap/uploads/abc/original"]
    assert storage.read("abc/original") == b"x"
    assert storage.delete_prefix("abc") == 1


def test_s3_missing_bucket_is_unavailable(make_s3_settings: SettingsFactory) -> None:
    storage = S3Storage(make_s3_settings(s3_bucket="no-such-bucket-here"))
    with pytest.raises(StorageUnavailable):
        storage.check()
    with pytest.raises(StorageUnavailable):
        storage.put("a/b", io.BytesIO(b"x"), content_type="text/plain")


def test_s3_unreachable_endpoint_is_unavailable(make_s3_settings: SettingsFactory) -> None:
    from testbed.processes import free_port

    settings = make_s3_settings(
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_max_attempts=1,
        s3_connect_timeout_seconds=0.5,
    )
    storage = S3Storage(settings)
    with pytest.raises(StorageUnavailable) as caught:
        storage.head("a/b")
    assert not caught.value.timed_out


def test_s3_attempts_are_bounded(make_s3_settings: SettingsFactory) -> None:
    """S3_MAX_ATTEMPTS is the total number of tries, each bounded by the read timeout."""
    import socket
    import threading

    accepted: list[socket.socket] = []
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.05)

        def accept_all() -> None:
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])  # and never answer
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept_all, daemon=True)
        thread.start()
        settings = make_s3_settings(
            s3_endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            s3_max_attempts=2,
            s3_read_timeout_seconds=0.3,
        )
        try:
            with pytest.raises(StorageUnavailable) as caught:
                S3Storage(settings).head("a/b")
        finally:
            stop.set()
            thread.join(timeout=2)
    for connection in accepted:
        connection.close()
    assert caught.value.timed_out
    assert len(accepted) == 2
