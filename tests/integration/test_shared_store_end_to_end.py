"""The chart's shared store end to end: two gateway pods count one client's limit once and
honour each other's Idempotency-Key records.

The chart's own Valkey settings (its rendered valkey.conf) run in a real redis-server on
loopback (Debian ships no valkey-server on this release; the directives are the same),
and the gateway and ai-svc start with their rendered ConfigMaps, only the in-cluster
addresses swapped for loopback ones. Two gateway process trees stand for two pods.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from testbed.images import photo
from testbed.processes import Service, free_port, gunicorn_service
from tests.deploy.chart import named, render

pytestmark = pytest.mark.integration

LIMIT = 6
CHART_VALUES = {"gateway": {"rateLimits": {"default": f"{LIMIT}/minute"}}}
# Addresses and paths that only make sense inside the pod.
POD_ONLY = {
    "HOST",
    "PORT",
    "METRICS_PORT",
    "PROMETHEUS_MULTIPROC_DIR",
    "UPLOAD_SVC_URL",
    "AI_SVC_URL",
}


def chart_env(objects: list[dict[str, Any]], name: str, store: str) -> dict[str, str]:
    data = dict(named(objects, "ConfigMap", f"ideasnap-{name}")["data"])
    assert data["REDIS_URL"] == "redis://ideasnap-valkey:6379/0"
    data["REDIS_URL"] = store
    return {key: value for key, value in data.items() if key not in POD_ONLY}


def shape(env: dict[str, str]) -> tuple[dict[str, str], int, int]:
    """The environment without what gunicorn_service sets, and the chart's pod shape."""
    rest = {
        key: value
        for key, value in env.items()
        if key not in {"WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_GRACEFUL_TIMEOUT"}
    }
    return rest, int(env["WEB_CONCURRENCY"]), int(env["GUNICORN_THREADS"])


@pytest.fixture(scope="module")
def chart() -> list[dict[str, Any]]:
    return render(CHART_VALUES)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, chart: list[dict[str, Any]]) -> Iterator[str]:
    server = shutil.which("valkey-server") or shutil.which("redis-server")
    assert server, "redis-server is installed by scripts/ensure-system-packages.sh"
    tmp: Path = tmp_path_factory.mktemp("valkey")
    port = free_port()
    conf = named(chart, "ConfigMap", "ideasnap-valkey")["data"]["valkey.conf"]
    lines = [line for line in conf.splitlines() if not line.startswith(("bind ", "port ", "dir "))]
    (tmp / "valkey.conf").write_text(
        "\n".join([*lines, "bind 127.0.0.1", f"port {port}", f"dir {tmp}"]) + "\n"
    )
    process = subprocess.Popen(
        [server, str(tmp / "valkey.conf")],
        stdout=(tmp / "valkey.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert process.poll() is None, (tmp / "valkey.log").read_text()
            assert time.monotonic() < deadline, "the store did not start"
            time.sleep(0.05)
    # The chart's settings are the ones in force.
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lfu"
    assert int(client.config_get("maxmemory")["maxmemory"]) == 96 * 1024 * 1024
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, chart: list[dict[str, Any]], store: str
) -> Iterator[list[Service]]:
    tmp: Path = tmp_path_factory.mktemp("shared-store")
    upload = gunicorn_service(
        "upload-svc", tmp, {"STORAGE_DIR": str(tmp / "storage")}, workers=1, threads=4
    )
    ai_env, _, _ = shape(chart_env(chart, "ai-svc", store))
    ai = gunicorn_service(
        "ai-svc", tmp, {**ai_env, "UPLOAD_SVC_URL": upload.url}, workers=1, threads=4
    )
    gateway_env, workers, threads = shape(chart_env(chart, "gateway", store))
    gateway_env.update(UPLOAD_SVC_URL=upload.url, AI_SVC_URL=ai.url)
    assert workers > 1, "two processes per pod, as the chart runs the gateway"
    pair = []
    for pod in ("pod-a", "pod-b"):
        (tmp / pod).mkdir()
        pair.append(
            gunicorn_service("gateway", tmp / pod, gateway_env, workers=workers, threads=threads)
        )
    started: list[Service] = []
    try:
        for service in (upload, ai, *pair):
            started.append(service.start())
        yield pair
    finally:
        for service in reversed(started):
            service.stop()


def presets(gateway: Service, client: str) -> int:
    response = requests.get(
        f"{gateway.url}/v1/presets",
        headers={"X-Forwarded-For": client, "Connection": "close"},
        timeout=10,
    )
    return response.status_code


def test_one_clients_limit_is_counted_once_across_two_gateway_processes(
    gateways: list[Service], store: str
) -> None:
    a, b = gateways
    client = "203.0.113.7"
    answers = [presets((a, b)[i % 2], client) for i in range(LIMIT)]
    assert answers == [200] * LIMIT
    # Each process served half of them: counted alone, neither would refuse yet.
    assert presets(a, client) == 429
    assert presets(b, client) == 429
    # Another client has its own allowance, on either process.
    assert presets(b, "203.0.113.8") == 200
    assert presets(a, "203.0.113.8") == 200
    assert redis.Redis.from_url(store).dbsize() > 0, "the counters live in the store"


def test_an_idempotency_key_sent_to_one_process_is_honoured_by_the_other(
    gateways: list[Service],
) -> None:
    a, b = gateways
    headers = {"X-Forwarded-For": "203.0.113.9", "Idempotency-Key": "retry-after-lost-answer-1"}
    image = photo(320, 240)

    def upload(gateway: Service) -> requests.Response:
        return requests.post(
            f"{gateway.url}/v1/uploads",
            files={"image": ("photo.jpg", image, "image/jpeg")},
            headers={**headers, "Connection": "close"},
            timeout=30,
        )

    first = upload(a)
    assert first.status_code == 201, first.text
    assert "Idempotency-Replayed" not in first.headers
    retry = upload(b)
    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotency-Replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"], "stored once, not twice"
