"""A pod whose request threads are all busy still answers its liveness probe at once.

The kubelet restarts a container whose liveness probe times out. If the probe waited
for a free request thread, every pod busy with slow model calls would be killed
mid-flight exactly when traffic peaks. The chart's liveness probe asks the gunicorn
master on the metrics port instead, which answers from its own thread. Here every
thread of ai-svc (then of the gateway, proxying or relaying streams) waits on a fake
Gemini that holds its answers (released once the probes are done, at most 90 s), while
50 probes in a row must each be answered in under 100 ms.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from testbed.fakes.gemini import FakeGeminiProcess
from testbed.images import photo
from testbed.metrics import total
from testbed.processes import Service, Stack, gunicorn_service

pytestmark = pytest.mark.integration

GEMINI_SECONDS = 90.0
PROBES = 50
PROBE_BUDGET_SECONDS = 0.1
AI_WORKERS, AI_THREADS = 2, 8
GATEWAY_WORKERS, GATEWAY_THREADS = 2, 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("saturation")
    fake = FakeGeminiProcess(latency=GEMINI_SECONDS, log_path=tmp / "gemini.log").start()
    upload = gunicorn_service(
        "upload-svc", tmp, {"STORAGE_DIR": str(tmp / "storage")}, workers=1, threads=4
    )
    ai = gunicorn_service(
        "ai-svc",
        tmp,
        {
            "UPLOAD_SVC_URL": upload.url,
            "GEMINI_API_KEY": "test-key-0123456789",
            "GEMINI_BASE_URL": fake.url,
            "GEMINI_FALLBACK_MODEL": "",
            "GEMINI_MAX_ATTEMPTS": "1",
            "GEMINI_TIMEOUT_SECONDS": "120",
            "AI_DEADLINE_SECONDS": "120",
            "AI_CACHE_SIZE": "0",
            "GUNICORN_TIMEOUT": "120",
        },
        workers=AI_WORKERS,
        threads=AI_THREADS,
    )
    gateway = gunicorn_service(
        "gateway",
        tmp,
        {
            "UPLOAD_SVC_URL": upload.url,
            "AI_SVC_URL": ai.url,
            "AI_READ_TIMEOUT_SECONDS": "120",
            "RATE_LIMIT_DEFAULT": "10000/minute",
            "RATE_LIMIT_AI": "10000/minute",
            "AI_DAILY_QUOTA": "10000/day",
            "GUNICORN_TIMEOUT": "120",
        },
        workers=GATEWAY_WORKERS,
        threads=GATEWAY_THREADS,
    )
    running = Stack(upload=upload, ai=ai, gateway=gateway, extra={"gemini": fake})
    try:
        for service in running.services:
            service.start()
        yield running
    finally:
        running.stop()
        fake.stop()


@pytest.fixture
def gemini(stack: Stack) -> Iterator[FakeGeminiProcess]:
    """Model calls wait until the test has probed; released at the end whatever happens."""
    fake: FakeGeminiProcess = stack.extra["gemini"]
    fake.control(hold=True)
    try:
        yield fake
    finally:
        fake.control(hold=False)


@pytest.fixture(scope="module")
def upload_id(stack: Stack) -> str:
    response = requests.post(
        f"{stack.url}/v1/uploads",
        files={"image": ("photo.jpg", photo(640, 480), "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def saturate(service: Service, url: str, body: dict[str, object], capacity: int) -> list[Future]:
    """Send exactly `capacity` slow requests, each on its own connection, and wait until
    every one of them holds a request thread.

    A worker takes a connection only with a free thread, so no request may wait behind
    a busy worker while another worker still has a thread idle.
    """
    pool = ThreadPoolExecutor(max_workers=capacity)
    futures = [
        pool.submit(requests.post, url, json=body, headers={"Connection": "close"}, timeout=120)
        for _ in range(capacity)
    ]
    pool.shutdown(wait=False)
    deadline = time.monotonic() + 10
    while (active := total(service.metrics_url, "http_server_active_requests")) < capacity:
        assert time.monotonic() < deadline, (
            f"{service.name} serves {active:.0f} of {capacity} requests: a worker queued "
            "a request while another had a free thread"
        )
        time.sleep(0.2)
    return futures


def probe_fifty_times(service: Service) -> list[float]:
    """Like the kubelet: a new connection per probe, a 1 s timeout, one after the other."""
    durations = []
    for _ in range(PROBES):
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", service.metrics_port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        durations.append(time.perf_counter() - started)
        assert response.status == 200, body
        report = json.loads(body)
        assert report["status"] == "ok"
        states = [worker["state"] for worker in report["workers"]]
        assert len(states) == int(service.managed.env["WEB_CONCURRENCY"])
        assert set(states) == {"heartbeating"}
        time.sleep(0.05)
    return durations


def assert_saturated_yet_alive(
    service: Service, capacity: int, futures: list[Future], gemini: FakeGeminiProcess
) -> None:
    # The request threads really are all taken: /healthz on the service port queues.
    with pytest.raises(requests.Timeout):
        requests.get(f"{service.url}/healthz", timeout=1)

    durations = probe_fifty_times(service)

    slowest = max(durations)
    print(
        f"\n{service.name}: {PROBES} liveness probes with {capacity} of {capacity} threads busy: "
        f"median {statistics.median(durations) * 1000:.1f} ms, max {slowest * 1000:.1f} ms"
    )
    assert slowest < PROBE_BUDGET_SECONDS, str([round(d * 1000, 1) for d in durations])
    # Still saturated after the last probe: every probe was answered under full load.
    assert total(service.metrics_url, "http_server_active_requests") >= capacity
    assert not any(future.done() for future in futures)

    # And the slow requests themselves finish, once Gemini answers: none was cut off.
    gemini.control(hold=False)
    finished = [future.result(timeout=120) for future in futures[:capacity]]
    assert [response.status_code for response in finished] == [200] * capacity


def test_ai_svc_answers_liveness_while_every_thread_waits_on_gemini(
    stack: Stack, upload_id: str, gemini: FakeGeminiProcess
) -> None:
    capacity = AI_WORKERS * AI_THREADS
    futures = saturate(
        stack.ai, f"{stack.ai.url}/v1/ideas", {"upload_id": upload_id, "count": 1}, capacity
    )
    assert_saturated_yet_alive(stack.ai, capacity, futures, gemini)


def test_gateway_answers_liveness_while_every_thread_proxies_a_slow_upstream(
    stack: Stack, upload_id: str, gemini: FakeGeminiProcess
) -> None:
    capacity = GATEWAY_WORKERS * GATEWAY_THREADS
    assert capacity < AI_WORKERS * AI_THREADS, "the gateway, not ai-svc, must be the bottleneck"
    futures = saturate(
        stack.gateway, f"{stack.url}/v1/ideas", {"upload_id": upload_id, "count": 1}, capacity
    )
    assert_saturated_yet_alive(stack.gateway, capacity, futures, gemini)


def test_gateway_answers_liveness_while_every_thread_relays_a_stream(
    stack: Stack, upload_id: str, gemini: FakeGeminiProcess
) -> None:
    """Streamed answers hold a gateway thread for the whole stream, heartbeats and all."""
    capacity = GATEWAY_WORKERS * GATEWAY_THREADS

    def stream() -> requests.Response:
        return requests.post(
            f"{stack.url}/v1/ideas",
            json={"upload_id": upload_id, "count": 1},
            headers={"Accept": "text/event-stream", "Connection": "close"},
            timeout=120,
        )

    pool = ThreadPoolExecutor(max_workers=capacity)
    futures = [pool.submit(stream) for _ in range(capacity)]
    pool.shutdown(wait=False)
    deadline = time.monotonic() + 30
    while total(stack.gateway.metrics_url, "gateway_streams_open") < capacity:
        assert time.monotonic() < deadline, "the gateway never had every thread streaming"
        time.sleep(0.2)
    with pytest.raises(requests.Timeout):
        requests.get(f"{stack.gateway.url}/healthz", timeout=1)

    durations = probe_fifty_times(stack.gateway)
    slowest = max(durations)
    print(
        f"\ngateway: {PROBES} liveness probes with {capacity} of {capacity} threads "
        f"streaming: median {statistics.median(durations) * 1000:.1f} ms, "
        f"max {slowest * 1000:.1f} ms"
    )
    assert slowest < PROBE_BUDGET_SECONDS, str([round(d * 1000, 1) for d in durations])
    assert total(stack.gateway.metrics_url, "gateway_streams_open") >= capacity
    assert not any(future.done() for future in futures)

    # Every stream was open through the probes, and each ends with its ideas.
    gemini.control(hold=False)
    for future in futures:
        answer = future.result(timeout=120)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        assert "event: done" in answer.text, answer.text[-500:]
