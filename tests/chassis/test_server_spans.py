"""The request's SERVER span: what a trace query and the sampler see of every request."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from flask import Flask, Response
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode
from werkzeug.test import TestResponse

from chassis.errors import install_error_handlers
from chassis.server_spans import install_server_spans


def build(provider: TracerProvider) -> Flask:
    app = Flask("test_server_spans")
    install_error_handlers(app)
    install_server_spans(app, excluded_paths={"/healthz"}, tracer_provider=provider)

    @app.get("/v1/things/<thing_id>")
    def thing(thing_id: str) -> dict:
        return {"id": thing_id, "trace_id": current_trace_id()}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/explode")
    def explode() -> dict:
        raise RuntimeError("the disk is on fire")

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for index in range(3):
                yield f"{index}:{current_trace_id()}\n"

        return Response(body(), mimetype="text/plain")

    return app


def get(app: Flask, path: str, **options: object) -> TestResponse:
    """A request as a server makes it: the body read, then closed (PEP 3333)."""
    response = app.test_client().get(path, **options)  # type: ignore[arg-type]
    response.get_data()
    response.close()
    return response


def current_trace_id() -> str:
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def app(exporter: InMemorySpanExporter) -> Flask:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return build(provider)


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_a_request_is_one_server_span_named_by_its_route(
    app: Flask, exporter: InMemorySpanExporter
) -> None:
    response = get(app, "/v1/things/42?full=1", headers={"User-Agent": "snap/1"})
    assert response.status_code == 200
    span = only_span(exporter)
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /v1/things/<thing_id>"
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/v1/things/<thing_id>"
    assert attributes["http.request.method"] == attributes["http.method"] == "GET"
    assert attributes["url.path"] == "/v1/things/42"
    assert attributes["http.target"] == "/v1/things/42?full=1"
    assert attributes["http.response.status_code"] == attributes["http.status_code"] == 200
    assert attributes["user_agent.original"] == "snap/1"
    assert span.status.status_code is StatusCode.UNSET
    assert response.get_json()["trace_id"] == format(span.context.trace_id, "032x")


def test_the_caller_s_traceparent_is_the_parent(app: Flask, exporter: InMemorySpanExporter) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    get(app, "/v1/things/1", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    span = only_span(exporter)
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == parent_id
    assert span.parent.is_remote


def test_an_unmatched_path_is_named_by_its_path_and_has_no_route(
    app: Flask, exporter: InMemorySpanExporter
) -> None:
    assert get(app, "/nowhere").status_code == 404
    span = only_span(exporter)
    assert span.name == "GET /nowhere"
    assert "http.route" not in (span.attributes or {})
    assert span.attributes["http.response.status_code"] == 404
    # A 404 is the caller's mistake, not the server's.
    assert span.status.status_code is StatusCode.UNSET


def test_an_unhandled_exception_is_recorded_and_the_span_is_an_error(
    app: Flask, exporter: InMemorySpanExporter
) -> None:
    assert get(app, "/explode").status_code == 500
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    (event,) = [event for event in span.events if event.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "the disk is on fire"


def test_a_streamed_body_runs_inside_the_span_and_ends_it_when_closed(
    app: Flask, exporter: InMemorySpanExporter
) -> None:
    response = app.test_client().get("/stream", buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    assert exporter.get_finished_spans() == ()
    rest = b"".join(chunks)
    response.close()
    span = only_span(exporter)
    lines = (first + rest).decode().splitlines()
    assert [line.split(":")[1] for line in lines] == [format(span.context.trace_id, "032x")] * 3


def test_excluded_paths_have_no_span(app: Flask, exporter: InMemorySpanExporter) -> None:
    assert get(app, "/healthz").status_code == 200
    assert exporter.get_finished_spans() == ()


def test_a_request_the_sampler_drops_still_carries_the_caller_s_trace(
    exporter: InMemorySpanExporter,
) -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build(provider)
    trace_id = secrets.token_hex(16)
    response = get(
        app, "/v1/things/1", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-00"}
    )
    assert response.get_json()["trace_id"] == trace_id
    assert exporter.get_finished_spans() == ()


def test_inside_an_active_span_the_request_is_its_child(
    app: Flask, exporter: InMemorySpanExporter
) -> None:
    outer = TracerProvider().get_tracer("test")
    with outer.start_as_current_span("client") as client_span:
        get(app, "/v1/things/1")
    span = only_span(exporter)
    assert span.kind is SpanKind.INTERNAL
    assert span.context.trace_id == client_span.get_span_context().trace_id
    assert span.parent is not None
    assert span.parent.span_id == client_span.get_span_context().span_id
