"""Fixtures for upload-svc: settings in a temporary directory, the app, and a real S3 API.

The S3 API is moto's standalone server (``moto_server``, the same program one would run
as a local S3 stand-in) in its own process on a free loopback port; the service talks to
it through boto3 exactly as it would talk to AWS S3, GCS interop or MinIO.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from flask import Flask
from flask.testing import FlaskClient

from testbed.processes import BIN, ManagedProcess, base_env, free_port, wait_http
from upload_svc.app import create_app
from upload_svc.settings import UploadSettings
from upload_svc.storage import Storage
from upload_svc.storage.local import LocalStorage
from upload_svc.storage.s3 import S3Storage

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "upload-svc-test",
    "AWS_SECRET_ACCESS_KEY": "upload-svc-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}
REGION = "us-east-1"

SettingsFactory = Callable[..., UploadSettings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    spool = tmp_path / "spool"
    spool.mkdir()

    def make(**overrides: Any) -> UploadSettings:
        values: dict[str, Any] = {
            "storage_backend": "local",
            "storage_dir": tmp_path / "storage",
            "spool_dir": spool,
            "otel_sdk_disabled": True,
        }
        values.update(overrides)
        return UploadSettings(**values)

    return make


@pytest.fixture
def app(make_settings: SettingsFactory) -> Flask:
    return create_app(make_settings())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server in its own process; AWS test credentials in this process's env."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp("moto")
    server = ManagedProcess(
        name="moto_server",
        args=[str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=base_env(**AWS_TEST_ENV),
        log_path=log_dir / "moto.log",
    ).start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_TEST_ENV.items():
            patch.setenv(name, value)
        try:
            wait_http(f"{endpoint}/moto-api/", timeout=30, process=server.process)
            yield endpoint
        finally:
            server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    bucket = f"uploads-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def make_s3_settings(
    make_settings: SettingsFactory, moto_endpoint: str, s3_bucket: str
) -> SettingsFactory:
    def make(**overrides: Any) -> UploadSettings:
        values: dict[str, Any] = {
            "storage_backend": "s3",
            "s3_bucket": s3_bucket,
            "s3_endpoint_url": moto_endpoint,
            "s3_region": REGION,
            "s3_addressing_style": "path",
            "s3_max_attempts": 2,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    answer = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in answer.get("Contents", []))


def local_files(root: Path) -> list[str]:
    """Every file under ``root``, hidden ones included (temp files, sidecars)."""
    if not root.exists():
        return []
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


class Backend:
    """One storage backend under test, and a way to list everything it holds."""

    def __init__(self, name: str, storage: Storage, list_all: Callable[[], list[str]]) -> None:
        self.name = name
        self.storage = storage
        self.list_all = list_all


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "local-storage"
        return Backend("local", LocalStorage(root), lambda: local_files(root))
    settings: UploadSettings = request.getfixturevalue("make_s3_settings")()
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = settings.s3_bucket or ""
    return Backend("s3", S3Storage(settings), lambda: bucket_keys(endpoint, bucket))


@pytest.fixture
def s3_app(make_s3_settings: SettingsFactory) -> Flask:
    return create_app(make_s3_settings())


def spool_files(settings: UploadSettings) -> list[str]:
    return local_files(settings.spool_dir) if settings.spool_dir else []


def env_for_subprocess(settings: dict[str, str]) -> dict[str, str]:
    return {**AWS_TEST_ENV, **settings, "OTEL_SDK_DISABLED": "true"}


@dataclass
class Service:
    backend: str
    app: Flask
    client: FlaskClient
    stored_keys: Callable[[], list[str]]
    """Every object key in the store (data only, no sidecars or temp files)."""


@pytest.fixture(params=["local", "s3"])
def service(request: pytest.FixtureRequest, make_settings: SettingsFactory) -> Service:
    if request.param == "local":
        settings = make_settings()
        root: Path = settings.storage_dir

        def keys() -> list[str]:
            return [name for name in local_files(root) if "/." not in f"/{name}"]

    else:
        settings = request.getfixturevalue("make_s3_settings")()
        endpoint = request.getfixturevalue("moto_endpoint")

        def keys() -> list[str]:
            return bucket_keys(endpoint, settings.s3_bucket or "")

    app = create_app(settings)
    return Service(request.param, app, app.test_client(), keys)
