"""library-svc fixtures: one real PostgreSQL per session, and every API test on both databases.

The ``database_url`` fixture is parametrized: each test using it runs once on SQLite and
once on PostgreSQL, against a database migrated with the service's own migrations. Tests
keep apart by person (a fresh uid each), so one database per backend serves the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from library_svc.app import create_app
from library_svc.migrate import upgrade
from library_svc.settings import LibrarySettings
from testbed.images import photo
from testbed.postgres import PostgresServer, start_postgres
from testbed.processes import Service, gunicorn_service


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = start_postgres(tmp_path_factory.mktemp("postgres-log"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'library.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"library_api_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    return url


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(database_url: str, upload_svc: Service, tmp_path: Path) -> Iterator[AppFactory]:
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "database_url": database_url,
            "otel_sdk_disabled": True,
            "sweep_interval_seconds": 0,
            "firebase_claims_enabled": False,
            "page_token_secret": "test-page-token-secret",
            "upload_svc_url": upload_svc.url,
        }
        values.update(overrides)
        app = create_app(LibrarySettings(**values))
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["db_engine"].dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def uid() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def who(uid: str, tier: str = "free") -> dict[str, str]:
    return {"X-IdeaSnap-User": uid, "X-IdeaSnap-Tier": tier}


@pytest.fixture(scope="session")
def upload_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real upload-svc (gunicorn): library-svc deletes and exports photos through it."""
    tmp = tmp_path_factory.mktemp("upload-svc")
    service = gunicorn_service(
        "upload-svc",
        tmp,
        {"STORAGE_DIR": str(tmp / "storage"), "OTEL_SDK_DISABLED": "true"},
        workers=1,
        threads=4,
    ).start()
    yield service
    service.stop()


def store_photo(upload_svc: Service, uid: str, width: int = 640, height: int = 480) -> dict:
    answer = requests.post(
        f"{upload_svc.url}/v1/uploads",
        files={"image": ("photo.jpg", photo(width, height), "image/jpeg")},
        headers=who(uid),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def snap_record(upload: dict) -> dict:
    """What the gateway sends to record a snap: its upload, preset, ideas and model."""
    return {
        "upload": upload,
        "preset": {"template": "social_post", "tone": "friendly", "language": "en", "count": 2},
        "ideas": [{"title": "One", "body": "First idea", "hashtags": ["#a"]}],
        "provider": "local",
        "model": "local-1",
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }


def fake_upload(number: int, size: int = 1000) -> dict:
    """An upload record for history-only tests (paging, limits) with no photo behind it."""
    return {
        "id": f"{number:032x}",
        "size": size,
        "content_type": "image/jpeg",
        "width": 10,
        "height": 10,
        "sha256": f"{number:064x}",
    }
