"""Fixtures for ai-svc: the fake Gemini API, a real upload-svc, and app builders.

ai-svc's Flask app runs in this process (test client) when a test needs to inject a
clock, a sleep or a tracer; it runs under gunicorn when a test reads /metrics or needs
several workers. upload-svc is always the real service under gunicorn, and the Gemini
API is the fake, spoken to by the real google-genai client over HTTP.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ai_svc.app import create_app
from ai_svc.providers.gemini import GeminiProvider, make_caller
from ai_svc.settings import AiSettings
from testbed.fakes.gemini import FakeGemini
from testbed.images import photo
from testbed.processes import (
    ManagedProcess,
    Service,
    base_env,
    free_port,
    gunicorn_service,
    wait_port_closed,
)

TEST_KEY = "test-gemini-key"


class FakeClock:
    """A monotonic clock that only moves when told to (or when something sleeps on it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Uploads:
    """Photos stored in the real upload-svc for this test session."""

    service: Service
    ids: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.service.url

    def store(self, name: str, image: bytes) -> str:
        response = requests.post(
            f"{self.url}/v1/uploads",
            files={"image": (f"{name}.jpg", image, "image/jpeg")},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        record = response.json()
        self.ids[name] = record["id"]
        self.records[name] = record
        return record["id"]


@pytest.fixture(scope="session")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uploads]:
    tmp = tmp_path_factory.mktemp("ai-upload-svc")
    service = gunicorn_service(
        "upload-svc", tmp, {"STORAGE_DIR": str(tmp / "storage")}, workers=1, threads=8
    )
    service.start()
    stored = Uploads(service)
    try:
        stored.store("photo", photo(1200, 900))
        stored.store("portrait", photo(600, 900, colour=(30, 60, 200)))
        yield stored
    finally:
        service.stop()


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@dataclass
class AiHarness:
    app: Flask
    provider: GeminiProvider
    clock: FakeClock
    settings: AiSettings

    def post(self, upload_id: str, **fields: Any) -> Any:
        return self.app.test_client().post("/v1/ideas", json={"upload_id": upload_id, **fields})


@pytest.fixture
def gemini_app(uploads: Uploads, fake_gemini: FakeGemini) -> Iterator[Callable[..., AiHarness]]:
    """Builds ai-svc in this process on the fake Gemini, with a fake clock and sleep."""
    built: list[GeminiProvider] = []

    def build(
        *, tracer_provider: TracerProvider | None = None, rng: float = 0.5, **overrides: Any
    ) -> AiHarness:
        values: dict[str, Any] = {
            "upload_svc_url": uploads.url,
            "gemini_api_key": TEST_KEY,
            "gemini_base_url": fake_gemini.url,
            "gemini_backoff_base_seconds": 0.5,
            "otel_sdk_disabled": True,
            "metrics_enabled": False,
            "ai_cache_size": 0,
            **overrides,
        }
        settings = AiSettings(**values)
        clock = FakeClock()
        caller = make_caller(settings, clock=clock, sleep=clock.sleep, rng=lambda: rng)
        provider = GeminiProvider(settings, caller=caller, tracer_provider=tracer_provider)
        built.append(provider)
        return AiHarness(create_app(settings, provider=provider), provider, clock, settings)

    yield build
    for provider in built:
        provider.close()


@dataclass
class RedisServer:
    port: int
    managed: ManagedProcess

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.managed.stop()
        wait_port_closed(self.port)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    managed = ManagedProcess(
        name="redis",
        args=[
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        env=base_env(),
        log_path=tmp_path / "redis.log",
        cwd=tmp_path,
    ).start()
    server = RedisServer(port, managed)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    try:
        yield server
    finally:
        server.stop()


def ai_gunicorn(tmp: Path, env: dict[str, str], *, workers: int = 1, threads: int = 8) -> Service:
    return gunicorn_service("ai-svc", tmp, env, workers=workers, threads=threads)
