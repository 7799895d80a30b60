"""The trace sampler of a real service: parent-based, at the ratio it is given.

upload-svc runs under gunicorn (one worker, so its spans leave through one exporter in
order) and exports over OTLP/HTTP to a collector stand-in here that decodes every span.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testbed.processes import Service, gunicorn_service

pytestmark = pytest.mark.integration


class Collector:
    """Accepts OTLP/HTTP trace exports and keeps the trace id of every span received."""

    def __init__(self) -> None:
        self.trace_ids: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                export = ExportTraceServiceRequest.FromString(body)
                collector.trace_ids.extend(
                    span.trace_id.hex()
                    for resource in export.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, trace_id: str, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while trace_id not in self.trace_ids:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.server.shutdown()


def start_upload_svc(tmp: Path, collector: Collector, ratio: str) -> Service:
    return gunicorn_service(
        "upload-svc",
        tmp,
        {
            "STORAGE_DIR": str(tmp / "storage"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": ratio,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
        workers=1,
        threads=2,
    ).start()


@pytest.fixture(scope="module")
def never_samples_new_traces(
    tmp_path_factory: pytest.TempPathFactory, collector: Collector
) -> Iterator[Service]:
    service = start_upload_svc(tmp_path_factory.mktemp("ratio0"), collector, "0")
    yield service
    service.stop()


def get(service: Service, traceparent: str | None = None) -> None:
    headers = {"traceparent": traceparent} if traceparent else {}
    response = requests.get(f"{service.url}/v1/uploads/{'0' * 32}", headers=headers, timeout=10)
    assert response.status_code == 404


def test_a_sampled_caller_is_followed_even_at_ratio_zero(
    never_samples_new_traces: Service, collector: Collector
) -> None:
    trace_id = secrets.token_hex(16)
    get(never_samples_new_traces, f"00-{trace_id}-{secrets.token_hex(8)}-01")
    assert collector.wait_for(trace_id), "a sampled parent's request left no span"


def test_an_unsampled_caller_and_a_new_trace_at_ratio_zero_leave_no_span(
    never_samples_new_traces: Service, collector: Collector
) -> None:
    unsampled = secrets.token_hex(16)
    get(never_samples_new_traces, f"00-{unsampled}-{secrets.token_hex(8)}-00")
    before = len(collector.trace_ids)
    get(never_samples_new_traces)
    # A sampled request after both: once its span is in, theirs would have been too.
    marker = secrets.token_hex(16)
    get(never_samples_new_traces, f"00-{marker}-{secrets.token_hex(8)}-01")
    assert collector.wait_for(marker)
    assert unsampled not in collector.trace_ids
    assert [trace for trace in collector.trace_ids[before:] if trace != marker] == []


def test_ratio_one_records_every_new_trace(
    tmp_path_factory: pytest.TempPathFactory, collector: Collector
) -> None:
    service = start_upload_svc(tmp_path_factory.mktemp("ratio1"), collector, "1.0")
    try:
        before = len(collector.trace_ids)
        for _ in range(3):
            get(service)
        deadline = time.monotonic() + 15
        while len(collector.trace_ids) < before + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(set(collector.trace_ids[before:])) == 3
    finally:
        service.stop()
