"""Fixtures for the gateway tests: the real services behind it, gateways, Redis, apps.

upload-svc, ai-svc and library-svc (SQLite, migrated first; no Firebase, a billing
secret of its own) run once for the whole package (one gunicorn worker each); each
test starts the gateways it needs with its own settings, as gunicorn processes or as an
in-process app (Flask's test client) calling the same real services over HTTP.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from gateway.app import create_app
from gateway.settings import GatewaySettings
from testbed.processes import Service, free_port, gunicorn_service, migrate_library
from testbed.servers import RedisServer, boot, stop_all
from tests.support.firebase_emulator import unsigned_token

CONTRACT_PROJECT = "demo-gateway-tests"


@dataclass
class Upstreams:
    upload: Service
    ai: Service
    storage: Path
    library: Service
    token: str
    """A signed-in caller's ID token (emulator mode, ``CONTRACT_PROJECT``); library-svc's
    billing webhook secret is the same ``Bearer`` value, so one header serves both."""


@pytest.fixture(scope="package")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    tmp = tmp_path_factory.mktemp("upstreams")
    storage = tmp / "storage"
    upload = gunicorn_service(
        "upload-svc", tmp, {"STORAGE_DIR": str(storage)}, workers=1, threads=8
    )
    ai = gunicorn_service("ai-svc", tmp, {"UPLOAD_SVC_URL": upload.url}, workers=1, threads=8)
    token = unsigned_token(CONTRACT_PROJECT, "contract-person", lifetime_seconds=6 * 3600)
    database_url = f"sqlite:///{tmp / 'library.db'}"
    migrate_library(database_url, tmp / "library-migrate.log")
    library = gunicorn_service(
        "library-svc",
        tmp,
        {
            "DATABASE_URL": database_url,
            "UPLOAD_SVC_URL": upload.url,
            "FIREBASE_CLAIMS_ENABLED": "false",
            "BILLING_WEBHOOK_AUTHORIZATION": f"Bearer {token}",
        },
        workers=1,
        threads=8,
    )
    services = [upload, ai, library]
    try:
        boot(services)
        yield Upstreams(upload=upload, ai=ai, storage=storage, library=library, token=token)
    finally:
        stop_all(services)


class Gateways:
    """Gateway processes against the package's services; all stopped together."""

    def __init__(self, folder: Path, upstreams: Upstreams) -> None:
        self.folder = folder
        self.upstreams = upstreams
        self.started: list[Service] = []
        self.numbers = itertools.count(1)

    def start(
        self, count: int = 1, *, workers: int = 1, threads: int = 8, **env: str
    ) -> list[Service]:
        batch = []
        for _ in range(count):
            folder = self.folder / f"gateway-{next(self.numbers)}"
            folder.mkdir(parents=True)
            batch.append(
                gunicorn_service(
                    "gateway",
                    folder,
                    {
                        "UPLOAD_SVC_URL": self.upstreams.upload.url,
                        "AI_SVC_URL": self.upstreams.ai.url,
                        "LIBRARY_SVC_URL": self.upstreams.library.url,
                        **env,
                    },
                    workers=workers,
                    threads=threads,
                )
            )
        self.started.extend(batch)
        boot(batch)
        return batch

    def stop(self) -> None:
        stop_all(self.started)


@pytest.fixture
def start_gateways(tmp_path: Path, upstreams: Upstreams) -> Iterator[Callable[..., list[Service]]]:
    """Start ``count`` gateway processes with the same settings, side by side."""
    gateways = Gateways(tmp_path, upstreams)
    yield gateways.start
    gateways.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def make_app(upstreams: Upstreams) -> Callable[..., Flask]:
    """An in-process gateway app against the real services (no tracing in-process)."""

    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "upload_svc_url": upstreams.upload.url,
            "ai_svc_url": upstreams.ai.url,
            "library_svc_url": upstreams.library.url,
            "otel_sdk_disabled": True,
            **overrides,
        }
        return create_app(GatewaySettings(**values))

    return make


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def bare_app() -> Callable[..., Flask]:
    """An in-process gateway app whose services are not running (nothing listens there)."""

    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "upload_svc_url": closed_port_url(),
            "ai_svc_url": closed_port_url(),
            "otel_sdk_disabled": True,
            **overrides,
        }
        return create_app(GatewaySettings(**values))

    return make
