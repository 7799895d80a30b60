"""Sentry events: tagged, linked to the trace, and scrubbed, sent by the real SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sentry_sdk
from flask import Flask, request
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from chassis.app import create_service_app
from chassis.sentry import init_sentry
from chassis.settings import ServiceSettings
from tests.support.sentry_receiver import SentryReceiver

GOOGLE_KEY = "AIzaSyD3-fake-but-shaped-like-a-real-key-123"
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.signature"
CLIENT_KEY = "client-key-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver() as running:
        yield running
    sentry_sdk.init(dsn=None)


def wait_for_events(receiver: SentryReceiver, count: int = 1) -> list[dict]:
    sentry_sdk.flush(timeout=5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(receiver.events()) < count:
        time.sleep(0.05)
    return receiver.events()


def test_error_event_is_tagged_linked_and_scrubbed(receiver: SentryReceiver) -> None:
    settings = ServiceSettings(
        service_name="upload-svc",
        release="1.2.3",
        environment="staging",
        sentry_dsn=receiver.dsn,
    )
    app: Flask = create_service_app(settings, "test_sentry")
    assert init_sentry(settings)
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())

    @app.post("/explode")
    def explode() -> str:
        request.get_data()
        raise RuntimeError(f"upstream rejected key {GOOGLE_KEY}")

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("client") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        response = app.test_client().post(
            "/explode",
            data=b"\xff\xd8\xff\xe0 jpeg bytes " + GOOGLE_KEY.encode(),
            headers={
                "Authorization": f"Bearer {BEARER}",
                "X-API-Key": CLIENT_KEY,
                "Cookie": "session=abcdef0123456789",
                "Content-Type": "image/jpeg",
            },
        )
    assert response.status_code == 500

    events = wait_for_events(receiver)
    assert len(events) == 1
    event = events[0]
    raw = b"".join(receiver.raw).decode(errors="replace")
    for secret in (GOOGLE_KEY, BEARER, CLIENT_KEY, "abcdef0123456789", "jpeg bytes"):
        assert secret not in raw

    assert event["tags"]["service"] == "upload-svc"
    assert event["release"] == "1.2.3"
    assert event["environment"] == "staging"
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    assert event["tags"]["trace_id"] == trace_id
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "data" not in event.get("request", {})


def test_no_dsn_means_no_sentry() -> None:
    assert not init_sentry(ServiceSettings(service_name="x"))
