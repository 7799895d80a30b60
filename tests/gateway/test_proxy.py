"""The streaming reverse proxy, over real processes: headers, failures, slowness, memory.

nginx stands in for services that misbehave on purpose (echoing what it received,
failing with a bare 500, answering a JSON 503, hanging); the real upload-svc and ai-svc
answer everything else.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from flask import Flask
from PIL import Image

from testbed.fakes.google_certs import FakeGoogleCerts
from testbed.metrics import total
from testbed.processes import Service, free_port
from testbed.resources import children, reset_peak, status_kib
from testbed.servers import Nginx, SilentUpstream
from tests.gateway.conftest import Gateways, Upstreams

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
UPLOAD_LIMIT = 10 * MIB
ECHOED = {
    "traceparent": "$http_traceparent",
    "request_id": "$http_x_request_id",
    "te": "$http_te",
    "keep_alive": "$http_keep_alive",
    "x_drop_me": "$http_x_drop_me",
    "x_api_key": "$http_x_api_key",
    "cookie": "$http_cookie",
    "authorization": "$http_authorization",
    "idempotency_key": "$http_idempotency_key",
    "forwarded_for": "$http_x_forwarded_for",
    "forwarded_proto": "$http_x_forwarded_proto",
    "accept_encoding": "$http_accept_encoding",
    "if_none_match": "$http_if_none_match",
    "x_custom": "$http_x_custom",
    "query": "$args",
}
ERROR_503 = json.dumps(
    {"error": {"code": "upstream_overloaded", "message": "Busy, try later.", "request_id": "x"}}
)

PROJECT = "demo-ideasnap"


def nginx_http_block(upload_port: int, ai_port: int, upstreams: Upstreams, silent: int) -> str:
    echo = json.dumps(ECHOED).replace("'", "\\'")
    return f"""
  server {{
    listen 127.0.0.1:{upload_port};
    keepalive_timeout 65 60;
    client_max_body_size 20m;
    location ~ ^/v1/uploads/[^/]+/thumbnail$ {{
      proxy_pass http://127.0.0.1:{silent};
      proxy_read_timeout 120s;
    }}
    location = /v1/uploads/broken {{
      return 500 "Internal Server Error: boom";
    }}
    location /v1/uploads/ {{
      default_type application/json;
      add_header Access-Control-Allow-Origin "*";
      add_header Set-Cookie "session=abc";
      add_header X-Upstream "upload";
      return 200 '{echo}';
    }}
    location = /v1/uploads {{
      proxy_pass {upstreams.upload.url};
    }}
  }}
  server {{
    listen 127.0.0.1:{ai_port};
    location = /v1/ideas {{
      default_type application/json;
      add_header Retry-After 7 always;
      return 503 '{ERROR_503}';
    }}
    location / {{
      proxy_pass {upstreams.ai.url};
    }}
  }}
"""


@dataclass
class Rig:
    nginx: Nginx
    silent: SilentUpstream
    misbehaving: Service
    """A gateway whose services are nginx (echo, bare 500, JSON 503, hang)."""
    direct: Service
    """A gateway straight in front of the real services, one worker (for memory)."""
    certs: FakeGoogleCerts
    """Google's certificate endpoint for the misbehaving gateway's ID tokens."""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("proxy")
    silent = SilentUpstream()
    upload_port, ai_port = free_port(), free_port()
    nginx = Nginx(tmp / "nginx", nginx_http_block(upload_port, ai_port, upstreams, silent.port))
    nginx.start(upload_port, ai_port)
    gateways = Gateways(tmp, upstreams)
    certs = FakeGoogleCerts().start()
    try:
        misbehaving = gateways.start(
            UPLOAD_SVC_URL=f"http://127.0.0.1:{upload_port}",
            AI_SVC_URL=f"http://127.0.0.1:{ai_port}",
            FIREBASE_PROJECT_ID=PROJECT,
            FIREBASE_CERTS_URL=certs.url,
        )[0]
        direct = gateways.start(RATE_LIMIT_ENABLED="false")[0]
        yield Rig(nginx, silent, misbehaving, direct, certs)
    finally:
        certs.stop()
        gateways.stop()
        nginx.stop()
        silent.close()


def test_hop_by_hop_and_credentials_stay_behind_and_trace_headers_go_on(rig: Rig) -> None:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    request_id = f"req-{secrets.token_hex(8)}"
    response = requests.get(
        f"{rig.misbehaving.url}/v1/uploads/abc123?size=large",
        headers={
            "traceparent": traceparent,
            "X-Request-ID": request_id,
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "hop-only",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Cookie": "session=secret",
            "Authorization": f"Bearer {rig.certs.token(PROJECT, 'proxied-person')}",
            "X-Forwarded-For": "6.6.6.6",
            "If-None-Match": "etag-abc",
            "X-Custom": "kept",
        },
        timeout=10,
    )
    assert response.status_code == 200
    seen = response.json()
    # The client's own trace continues upstream (the gateway's span is the new parent).
    assert seen["traceparent"].split("-")[1] == trace_id
    assert seen["request_id"] == request_id == response.headers["X-Request-ID"]
    for dropped in ("te", "keep_alive", "x_drop_me", "cookie", "authorization"):  # a valid token
        assert seen[dropped] == "", dropped
    # The client address as the gateway resolved it, not what the client claimed.
    assert seen["forwarded_for"] == "127.0.0.1"
    assert seen["forwarded_proto"] == "http"
    assert seen["accept_encoding"] == response.request.headers["Accept-Encoding"]
    assert seen["if_none_match"] == "etag-abc"
    assert seen["x_custom"] == "kept"
    assert seen["query"] == "size=large"
    # On the way back: nothing that would bypass the gateway's CORS or set cookies.
    assert response.headers["X-Upstream"] == "upload"
    for header in ("Access-Control-Allow-Origin", "Set-Cookie", "Keep-Alive"):
        assert header not in response.headers, header
    # A client that did not say it reads compressed bodies is not sent any.
    plain = requests.get(
        f"{rig.misbehaving.url}/v1/uploads/abc123", headers={"Accept-Encoding": None}, timeout=10
    )
    assert plain.json()["accept_encoding"] == "identity"


def test_upstream_failures_have_a_defined_answer(rig: Rig) -> None:
    gateway = rig.misbehaving
    bare = requests.get(f"{gateway.url}/v1/uploads/broken", timeout=10)
    assert bare.status_code == 502
    assert bare.json()["error"]["code"] == "bad_gateway"
    assert "boom" not in bare.text
    assert bare.json()["error"]["request_id"] == bare.headers["X-Request-ID"]

    busy = requests.post(f"{gateway.url}/v1/ideas", json={"upload_id": "0" * 32}, timeout=10)
    assert busy.status_code == 503
    assert busy.json()["error"]["code"] == "upstream_overloaded"
    assert busy.json()["error"]["request_id"] == busy.headers["X-Request-ID"]
    assert busy.headers["Retry-After"] == "7"
    assert total(gateway.metrics_url, "gateway_upstream_errors_total", upstream="upload") >= 1
    assert (
        total(
            gateway.metrics_url,
            "gateway_upstream_errors_total",
            upstream="ai",
            code="upstream_overloaded",
        )
        >= 1
    )


def test_a_slow_upstream_and_a_slow_client_do_not_block_others(rig: Rig) -> None:
    gateway = rig.misbehaving
    results: dict[str, requests.Response] = {}

    def slow_upstream() -> None:
        results["slow"] = requests.get(f"{gateway.url}/v1/uploads/abc/thumbnail", timeout=60)

    hanging = threading.Thread(target=slow_upstream)
    hanging.start()
    image = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(image, "PNG")
    # A slow client: headers and a first piece of a 1 MB body, then nothing.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as trickle:
        trickle.sendall(
            b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1048576\r\n\r\n" + b"\x89PNG" + b"\0" * 1000
        )
        # Both are in flight; everyone else is served meanwhile, more than once over.
        for _ in range(3):
            assert requests.get(f"{gateway.url}/v1/presets", timeout=10).status_code == 200
            stored = requests.post(
                f"{gateway.url}/v1/uploads",
                data=image.getvalue(),
                headers={"Content-Type": "image/png"},
                timeout=10,
            )
            assert stored.status_code == 201, stored.text
        assert hanging.is_alive(), "the hanging upstream answered?"
    # The phone went away with its body half sent: answered (400), the service let go.
    deadline = time.monotonic() + 10
    while not [
        line
        for line in gateway.managed.log_records()
        if line.get("event") == "request" and line.get("status") == 400
    ]:
        assert time.monotonic() < deadline, "the abandoned upload is still being waited for"
        time.sleep(0.05)
    # Closing the listening socket resets the queued connection: a defined 502, not a hang.
    rig.silent.close()
    hanging.join(30)
    assert not hanging.is_alive()
    assert results["slow"].status_code == 502
    assert results["slow"].json()["error"]["code"] == "bad_gateway"


def worker_pid(service: Service) -> int:
    assert service.managed.process is not None
    workers = children(service.managed.process.pid)
    assert len(workers) == 1, "expected one gunicorn worker"
    return workers[0]


def big_photo() -> bytes:
    """A ~9.8 MB JPEG of noise (noise does not compress): just under the 10 MiB limit."""
    width = 2250
    while True:
        image = Image.frombytes("RGB", (width, 2200), os.urandom(width * 2200 * 3))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=100)
        if out.tell() <= UPLOAD_LIMIT - 64 * 1024:
            return out.getvalue()
        width -= 100


def peak_extra_kib(pid: int, requests_at_once: int, send: Callable[[], int]) -> float:
    """Peak resident memory above the start, per request, while ``send`` runs N at once."""
    reset_peak(pid)
    baseline = status_kib(pid, "VmRSS")
    with ThreadPoolExecutor(requests_at_once) as pool:
        statuses = list(pool.map(lambda _: send(), range(requests_at_once)))
    assert statuses == [201] * requests_at_once
    return (status_kib(pid, "VmHWM") - baseline) / requests_at_once


def test_a_10_mb_upload_streams_through_in_bounded_memory(
    rig: Rig, record_property: Callable[[str, object], None]
) -> None:
    gateway = rig.direct
    photo = big_photo()
    pid = worker_pid(gateway)

    def upload() -> int:
        return requests.post(
            f"{gateway.url}/v1/uploads",
            files={"image": ("big.jpg", photo, "image/jpeg")},
            timeout=60,
        ).status_code

    def snap() -> int:
        return requests.post(
            f"{gateway.url}/v1/snaps",
            files={"image": ("big.jpg", photo, "image/jpeg")},
            data={"count": "1"},
            timeout=60,
        ).status_code

    # Warm up: every code path, pool and thread the measured requests will use.
    for send in (upload, snap):
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(lambda _, send=send: send(), range(4))) == {201}

    figures = {
        "photo_bytes": len(photo),
        "upload_one_kib": peak_extra_kib(pid, 1, upload),
        "upload_four_at_once_kib_each": peak_extra_kib(pid, 4, upload),
        "snap_one_kib": peak_extra_kib(pid, 1, snap),
    }
    record_property("gateway_memory", figures)
    print(f"gateway extra memory per request: {json.dumps(figures)}")
    for name in ("upload_one_kib", "upload_four_at_once_kib_each", "snap_one_kib"):
        assert figures[name] < 1024, figures


def test_the_body_limit_is_enforced_at_the_edge(rig: Rig, upstreams: Upstreams) -> None:
    gateway = rig.direct
    before = total(upstreams.upload.metrics_url, "http_server_request_duration_seconds_count")
    # Declared too large: refused from the headers, before a byte of the body is read.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 20000000\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := conn.recv(65536):  # headers and body may arrive apart
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"payload_too_large"' in answer

    # Chunked, no length: cut off once it passes the limit.
    def chunks(total_bytes: int) -> Iterator[bytes]:
        piece = b"\xff" * (256 * 1024)
        for _ in range(total_bytes // len(piece)):
            yield piece

    try:
        too_big = requests.post(
            f"{gateway.url}/v1/uploads",
            data=chunks(12 * MIB),
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
    except requests.ConnectionError:
        pass  # the gateway may close before the client finished sending: also refused

    after = total(upstreams.upload.metrics_url, "http_server_request_duration_seconds_count")
    # The declared-too-large body never reached upload-svc; the chunked one was cut short
    # on its way (upload-svc answers the truncated stream itself, at most once).
    assert after - before <= 1

    # A chunked upload within the limit goes through.
    image = io.BytesIO()
    Image.new("RGB", (300, 200), (90, 30, 200)).save(image, "JPEG")
    body = image.getvalue()
    ok = requests.post(
        f"{gateway.url}/v1/uploads",
        data=iter([body[: len(body) // 2], body[len(body) // 2 :]]),
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["size"] > 0


def test_requests_the_http_server_refuses_get_the_error_envelope(
    rig: Rig, upstreams: Upstreams
) -> None:
    """A query string over gunicorn's line limit, or too many headers, is a JSON error.

    Both are refused before any route runs, by the gateway and by a service alike, and
    every operation of the published document lists the two statuses.
    """
    long_query = "&".join(f"page_size={index}" for index in range(800))
    for base in (rig.direct.url, upstreams.upload.url):
        too_long = requests.get(f"{base}/v1/presets?{long_query}", timeout=10)
        assert too_long.status_code == 414
        assert too_long.headers["Content-Type"] == "application/json"
        error = too_long.json()["error"]
        assert error["code"] == "uri_too_long"
        assert error["request_id"] == too_long.headers["X-Request-ID"]

    many = {f"X-Extra-{index}": "1" for index in range(120)}
    too_many = requests.get(f"{rig.direct.url}/v1/presets", headers=many, timeout=10)
    assert too_many.status_code == 431
    assert too_many.json()["error"]["code"] == "header_fields_too_large"

    # The worker answers the next request as usual.
    assert requests.get(f"{rig.direct.url}/v1/presets", timeout=10).status_code == 200
    document = requests.get(f"{rig.direct.url}/openapi.json", timeout=10).json()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if isinstance(operation, dict) and "responses" in operation:
                assert {"414", "431"} <= operation["responses"].keys(), (method, path)


def test_timeouts_and_refused_connections_in_process(bare_app: Callable[..., Flask]) -> None:
    with SilentUpstream() as silent:
        app = bare_app(
            ai_svc_url=silent.url,
            presets_read_timeout_seconds=0.3,
            upstream_connect_timeout_seconds=0.3,
        )
        client = app.test_client()
        slow = client.get("/v1/presets")
        assert slow.status_code == 504
        assert slow.json["error"]["code"] == "upstream_timeout"
        refused = client.get("/v1/uploads/abc")  # nothing listens on the upload port
        assert refused.status_code == 503
        assert refused.json["error"]["code"] == "upstream_unavailable"
