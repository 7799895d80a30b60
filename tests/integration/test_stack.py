"""The whole stack as real gunicorn processes (2 workers each) on loopback ports."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testbed.images import photo
from testbed.metrics import total
from testbed.processes import Stack, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("stack")
    running = start_stack(tmp, workers=2, threads=4)
    yield running
    running.stop()


def snap(stack: Stack, image: bytes, **headers: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/snaps",
        files={"image": ("photo.jpg", image, "image/jpeg")},
        data={"template": "social_post", "tone": "friendly", "language": "en", "count": "3"},
        headers=headers,
        timeout=30,
    )


def test_snap_returns_ideas_and_a_fetchable_upload(stack: Stack) -> None:
    image = photo(1600, 1200)
    response = snap(stack, image)
    assert response.status_code == 201, response.text
    body = response.json()

    assert body["provider"] == "local"
    assert len(body["ideas"]) == 3
    assert all(idea["title"] and idea["body"] for idea in body["ideas"])
    assert body["disclaimer"]
    upload = body["upload"]
    assert (upload["width"], upload["height"]) == (1600, 1200)

    stored = requests.get(f"{stack.url}{upload['urls']['image']}", timeout=10)
    assert stored.status_code == 200
    assert stored.headers["Content-Type"] == "image/jpeg"
    assert stored.content[:3] == b"\xff\xd8\xff"
    thumbnail = requests.get(f"{stack.url}{upload['urls']['thumbnail']}", timeout=10)
    assert thumbnail.status_code == 200
    assert thumbnail.headers["Content-Type"] == "image/jpeg"
    assert len(thumbnail.content) < len(stored.content)


def test_one_trace_id_reaches_every_service_log(stack: Stack) -> None:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    assert snap(stack, photo(640, 480), traceparent=traceparent).status_code == 201

    for service in stack.services:
        deadline = time.monotonic() + 5
        while True:
            lines = [r for r in service.managed.log_records() if r.get("trace_id") == trace_id]
            if lines or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert lines, f"{service.name} logged nothing in trace {trace_id}"
        access = [line for line in lines if line.get("event") == "request"]
        assert access, f"{service.name} wrote no access line in the trace"
        assert all(line["service"] == service.name for line in lines)
        assert all(line.get("span_id") for line in lines)


def test_every_log_line_is_json(stack: Stack) -> None:
    for service in stack.services:
        text = service.managed.log_text()
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines
        for line in lines:
            record = json.loads(line)
            assert {"timestamp", "level", "event", "service"} <= record.keys(), line


def test_metrics_add_up_across_workers(stack: Stack) -> None:
    route = "/v1/presets"
    before_gateway = total(
        stack.gateway.metrics_url, "http_server_request_duration_seconds_count", route=route
    )
    before_ai = total(
        stack.ai.metrics_url, "http_server_request_duration_seconds_count", route=route
    )
    count = 24
    for _ in range(count):
        # A new connection each time, so gunicorn spreads them over both workers.
        response = requests.get(f"{stack.url}{route}", headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
    after_gateway = total(
        stack.gateway.metrics_url, "http_server_request_duration_seconds_count", route=route
    )
    after_ai = total(
        stack.ai.metrics_url, "http_server_request_duration_seconds_count", route=route
    )
    assert after_gateway - before_gateway == count
    assert after_ai - before_ai == count
    threads = total(stack.gateway.metrics_url, "http_server_worker_threads")
    assert threads == 2 * 4


def test_metrics_are_not_on_the_public_port(stack: Stack) -> None:
    for path in ("/metrics", "/internal/uploads/0123456789abcdef0123456789abcdef/preview"):
        response = requests.get(f"{stack.url}{path}", timeout=5)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_upload_svc_down_is_a_quick_json_503_then_recovers(stack: Stack) -> None:
    stack.upload.stop()
    try:
        response = snap(stack, photo(320, 240))
        # A dead upstream must be answered at once, not after a timeout.
        fast = requests.get(f"{stack.url}/v1/uploads/0123456789abcdef0123456789abcdef", timeout=1.0)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "upstream_unavailable"
        assert fast.status_code == 503
        assert fast.json()["error"]["code"] == "upstream_unavailable"
        assert fast.json()["error"]["request_id"] == fast.headers["X-Request-ID"]
    finally:
        stack.upload.start()
    assert snap(stack, photo(320, 240)).status_code == 201


def test_sigterm_lets_an_in_flight_request_finish(stack: Stack) -> None:
    """A request already being received when SIGTERM arrives is completed, not cut off."""
    image = photo(800, 600)
    head = (
        f"POST /v1/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(image)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", stack.upload.port), timeout=10) as conn:
        conn.sendall(head + image[: len(image) // 2])
        time.sleep(0.3)
        assert stack.upload.managed.process is not None
        stack.upload.managed.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.sendall(image[len(image) // 2 :])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 201 " in status_line, answer[:300]
    assert stack.upload.managed.process.wait(20) == 0
    stack.upload.start()


def events_of(response: requests.Response) -> list[tuple[str, dict]]:
    found, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            found.append((name, json.loads(line.removeprefix("data: "))))
    return found


def test_the_local_provider_streams_the_same_ideas_as_its_json_answer(
    stack: Stack,
) -> None:
    image = photo(900, 600, colour=(40, 160, 70))
    streamed = snap(stack, image, Accept="text/event-stream")
    assert streamed.status_code == 200
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    events = events_of(streamed)
    assert [name for name, _ in events] == ["upload", "idea", "idea", "idea", "done"]
    done = events[-1][1]
    assert done["provider"] == "local"
    assert done["cached"] is False

    as_json = snap(stack, image).json()
    ideas = [data["idea"] for name, data in events if name == "idea"]
    assert as_json["ideas"] == ideas, "the stream tells the same ideas as the JSON answer"
