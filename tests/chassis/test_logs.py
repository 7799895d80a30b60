"""Log lines: JSON, trace-linked, and never carrying a secret."""

from __future__ import annotations

import json
import logging
import secrets

import pytest
import structlog
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider

from chassis.logs import configure_logging
from chassis.requests_context import install_request_context
from chassis.server_spans import install_server_spans

GOOGLE_KEY = "AIzaSyD3-fake-but-shaped-like-a-real-key-123"
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.signature"


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):
    """Configure the chassis logging as a service does, and read back what it printed."""
    configure_logging("test-svc", "INFO", "json")
    caplog.set_level(logging.INFO)  # pytest resets the root level between phases

    def read() -> list[dict]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]

    yield read
    structlog.contextvars.clear_contextvars()


def test_log_line_carries_the_active_span(lines) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        structlog.get_logger("t").info("inside", item=3)
        logging.getLogger("stdlib").warning("stdlib inside")
        context = span.get_span_context()
    structlog.get_logger("t").info("outside")

    inside, stdlib_inside, outside = lines()
    for record in (inside, stdlib_inside):
        assert record["trace_id"] == format(context.trace_id, "032x")
        assert record["span_id"] == format(context.span_id, "016x")
        assert record["service"] == "test-svc"
        assert {"timestamp", "level", "event"} <= record.keys()
    assert inside["item"] == 3
    assert stdlib_inside["event"] == "stdlib inside"
    assert "trace_id" not in outside


def test_request_id_is_bound_to_lines(lines) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-12345678")
    structlog.get_logger().info("hello")
    logging.getLogger("lib").info("from a library")
    first, second = lines()
    assert first["request_id"] == second["request_id"] == "req-12345678"


def test_secrets_never_reach_a_log_line(lines) -> None:
    log = structlog.get_logger()
    log.info(
        "calling upstream",
        api_key=GOOGLE_KEY,
        headers={"Authorization": f"Bearer {BEARER}", "Accept": "image/jpeg"},
        url=f"https://example.invalid/v1/models?key={GOOGLE_KEY}",
        sentry_dsn="https://abcdef0123456789@sentry.example.invalid/42",
    )
    log.info(f"free text with Bearer {BEARER} and {GOOGLE_KEY}")
    logging.getLogger("lib").error("lib says Authorization: Bearer %s", BEARER)
    try:
        raise RuntimeError(f"upstream refused key {GOOGLE_KEY}")
    except RuntimeError:
        log.exception("failed")

    records = lines()
    text = json.dumps(records)
    assert GOOGLE_KEY not in text
    assert BEARER not in text
    assert "abcdef0123456789" not in text
    assert records[0]["headers"]["Accept"] == "image/jpeg"
    assert len(records) == 4


def test_token_counts_are_not_mistaken_for_secrets(lines) -> None:
    structlog.get_logger().info("usage", input_tokens=258, output_tokens=90, token="s3cr3t-value")
    (record,) = lines()
    assert record["input_tokens"] == 258
    assert record["output_tokens"] == 90
    assert record["token"] != "s3cr3t-value"


def access_app() -> Flask:
    app = Flask("test_access_log")
    install_request_context(app)
    install_server_spans(app, tracer_provider=TracerProvider())

    @app.get("/v1/things/<thing_id>")
    def thing(thing_id: str) -> dict:
        return {"id": thing_id}

    return app


def test_each_request_writes_one_access_line_inside_its_trace(lines) -> None:
    trace_id = secrets.token_hex(16)
    response = (
        access_app()
        .test_client()
        .get(
            f"/v1/things/{GOOGLE_KEY}",
            headers={
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                "X-Request-ID": "req-12345678",
            },
        )
    )
    response.close()

    (line,) = lines()
    assert line["event"] == "request"
    assert line["logger"] == "chassis.access"
    assert line["level"] == "info"
    assert line["service"] == "test-svc"
    assert line["request_id"] == "req-12345678"
    assert line["trace_id"] == trace_id
    assert len(line["span_id"]) == 16
    assert (line["method"], line["route"], line["status"]) == ("GET", "/v1/things/<thing_id>", 200)
    assert {"timestamp", "duration_ms", "bytes_in", "bytes_out", "path"} <= line.keys()
    assert GOOGLE_KEY not in json.dumps(line)


def test_access_lines_follow_the_configured_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test-svc", "WARNING", "json")
    try:
        access_app().test_client().get("/v1/things/1").close()
        assert capsys.readouterr().out == ""
    finally:
        configure_logging("test-svc", "INFO", "json")
