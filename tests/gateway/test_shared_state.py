"""Limits and idempotency keys shared through a real redis-server by gateway processes.

Two gateway processes and one redis-server serve the whole module; each test is a client
of its own (its own API key), so their counts do not mix.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
import requests
import urllib3

from testbed.images import photo
from testbed.metrics import total
from testbed.processes import Service
from testbed.servers import RedisServer
from tests.gateway.conftest import Gateways, Upstreams

pytestmark = pytest.mark.integration

KEYS = {name: f"k-{name}-{secrets.token_hex(8)}" for name in ("share", "outage", "idempotent")}


@dataclass
class Pair:
    redis: RedisServer
    first: Service
    second: Service


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("shared")
    keys = tmp / "api-keys"
    keys.write_text("".join(f"{key}:{name}\n" for name, key in KEYS.items()))
    redis_server = RedisServer(tmp).start()
    gateways = Gateways(tmp, upstreams)
    try:
        first, second = gateways.start(
            2,
            REDIS_URL=redis_server.url,
            RATE_LIMIT_DEFAULT="6/minute",
            RATE_LIMIT_STORE_RETRY_SECONDS="0.3",
            API_KEYS_FILE=str(keys),
        )
        yield Pair(redis_server, first, second)
    finally:
        gateways.stop()
        redis_server.stop()


def get(
    service: Service, path: str = "/v1/presets", *, key: str | None = None
) -> requests.Response:
    headers = {"X-API-Key": key} if key else {}
    return requests.get(f"{service.url}{path}", headers=headers, timeout=10)


def events(service: Service, name: str) -> list[dict]:
    return [record for record in service.managed.log_records() if record.get("event") == name]


def test_two_gateways_share_one_limit(pair: Pair) -> None:
    first, second = pair.first, pair.second
    before = sum(
        total(gateway.metrics_url, "gateway_rate_limited_total", limit="default")
        for gateway in (first, second)
    )
    answers = [get(first if n % 2 == 0 else second, key=KEYS["share"]) for n in range(8)]
    assert [answer.status_code for answer in answers] == [200] * 6 + [429] * 2
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers[:6]] == [
        "5",
        "4",
        "3",
        "2",
        "1",
        "0",
    ]
    for refused in answers[6:]:
        error = refused.json()["error"]
        assert error["code"] == "rate_limited"
        assert error["request_id"] == refused.headers["X-Request-ID"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 61
        assert refused.headers["RateLimit-Remaining"] == "0"
    after = sum(
        total(gateway.metrics_url, "gateway_rate_limited_total", limit="default")
        for gateway in (first, second)
    )
    assert after - before == 2


def test_redis_outage_fails_open_then_limits_return(pair: Pair) -> None:
    gateway, key = pair.first, KEYS["outage"]
    assert [get(gateway, key=key).status_code for _ in range(2)] == [200, 200]
    errors_before = total(gateway.metrics_url, "gateway_rate_limit_store_errors_total")

    pair.redis.stop()
    try:
        during = [get(gateway, key=key) for _ in range(8)]  # over the limit of 6
    finally:
        pair.redis.start()  # same port, empty: counting starts again
    assert [answer.status_code for answer in during] == [200] * 8
    assert all("X-RateLimit-Remaining" not in answer.headers for answer in during)
    errors = total(gateway.metrics_url, "gateway_rate_limit_store_errors_total")
    assert errors - errors_before == 8
    warnings = events(gateway, "rate_limit_store_unavailable")
    assert warnings
    assert warnings[-1]["level"] == "warning"
    assert warnings[-1]["mode"] == "open"

    counted, refused = 0, None
    for _ in range(60):
        answer = get(gateway, key=key)
        if answer.status_code == 429:
            refused = answer
            break
        assert answer.status_code == 200
        if "X-RateLimit-Remaining" in answer.headers:
            counted += 1
        else:
            time.sleep(0.1)  # still inside the retry pause after the outage
    assert refused is not None, "limits did not come back with Redis"
    assert counted == 6
    assert events(gateway, "rate_limit_store_recovered")


def test_redis_outage_fails_closed_when_configured(
    start_gateways: Callable[..., list[Service]], redis_server: RedisServer
) -> None:
    (gateway,) = start_gateways(
        REDIS_URL=redis_server.url,
        RATE_LIMIT_FAIL_OPEN="false",
        RATE_LIMIT_STORE_RETRY_SECONDS="0.2",
    )
    assert get(gateway).status_code == 200
    assert get(gateway, "/readyz").status_code == 200
    redis_server.stop()
    refused = get(gateway)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "rate_limit_unavailable"
    assert int(refused.headers["Retry-After"]) >= 1
    not_ready = get(gateway, "/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["details"]["checks"]["rate_limit_store"] == "failed"
    assert get(gateway, "/healthz").status_code == 200  # alive, just not ready

    redis_server.start()
    deadline = time.monotonic() + 10
    while get(gateway).status_code != 200:
        assert time.monotonic() < deadline, "did not recover with Redis"
        time.sleep(0.1)
    assert get(gateway, "/readyz").status_code == 200


def snap(service: Service, image: bytes, key: str) -> requests.Response:
    return requests.post(
        f"{service.url}/v1/snaps",
        files={"image": ("photo.jpg", image, "image/jpeg")},
        data={"count": "2"},
        headers={"Idempotency-Key": key, "X-API-Key": KEYS["idempotent"]},
        timeout=30,
    )


def test_idempotency_keys_are_shared_and_a_running_duplicate_gets_409(pair: Pair) -> None:
    first, second = pair.first, pair.second
    image = photo(400, 300)
    key = secrets.token_hex(12)
    replays_before = total(second.metrics_url, "gateway_idempotent_replays_total")
    succeeded_before = total(first.metrics_url, "gateway_snaps_total", stage="succeeded")
    received_before = total(second.metrics_url, "gateway_snaps_total", stage="received")

    # A slow phone: headers and half the body, then a pause. The key is claimed.
    body, content_type = urllib3.encode_multipart_formdata(
        {"count": "2", "image": ("photo.jpg", image, "image/jpeg")}
    )
    head = (
        f"POST /v1/snaps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nIdempotency-Key: {key}\r\n"
        f"X-API-Key: {KEYS['idempotent']}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", first.port), timeout=30) as slow:
        slow.sendall(head + body[: len(body) // 2])
        store = pair.redis.client()
        deadline = time.monotonic() + 10
        while not store.keys("gateway:idempotency:*"):
            assert time.monotonic() < deadline, "the first request never claimed its key"
            time.sleep(0.02)
        duplicate = snap(second, image, key)  # the retry lands on the other replica
        assert duplicate.status_code == 409
        assert duplicate.json()["error"]["code"] == "idempotency_in_progress"
        assert duplicate.headers["Retry-After"] == "1"

        slow.sendall(body[len(body) // 2 :])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
    assert b" 201 " in answer.split(b"\r\n", 1)[0], answer[:300]
    original = answer.split(b"\r\n\r\n", 1)[1]

    replayed = snap(second, image, key)
    assert replayed.status_code == 201
    assert replayed.headers["Idempotency-Replayed"] == "true"
    assert replayed.content == original
    replays = total(second.metrics_url, "gateway_idempotent_replays_total")
    assert replays - replays_before == 1
    succeeded = total(first.metrics_url, "gateway_snaps_total", stage="succeeded")
    assert succeeded - succeeded_before == 1
    # The refused duplicate and the replay never started a snap on the second gateway.
    received = total(second.metrics_url, "gateway_snaps_total", stage="received")
    assert received - received_before == 0


class RoundTrips:
    """Commands clients send to Redis, as MONITOR shows them (a script's own calls aside)."""

    END = "round-trips-end"

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.commands: list[str] = []
        self._stack = contextlib.ExitStack()
        # MONITOR is running once this returns.
        self._monitor = self._stack.enter_context(server.client().monitor())
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError, ValueError):
            while True:
                seen = self._monitor.next_command()
                if self.END in seen["command"]:
                    return
                if seen["client_type"] != "lua":
                    self.commands.append(seen["command"])

    def stop(self) -> list[str]:
        """Everything sent until now: MONITOR relays in order, so wait for a last marker."""
        self.server.client().echo(self.END)
        self._thread.join(timeout=10)
        self._stack.close()
        return self.commands


def test_a_proxied_request_costs_one_redis_round_trip(
    start_gateways: Callable[..., list[Service]], redis_server: RedisServer
) -> None:
    (gateway,) = start_gateways(REDIS_URL=redis_server.url, RATE_LIMIT_DEFAULT="1000/minute")
    for _ in range(3):  # the limit script is loaded, every pool is warm
        assert get(gateway).status_code == 200
    watching = RoundTrips(redis_server)
    answers = [get(gateway) for _ in range(10)]
    commands = watching.stop()
    assert [answer.status_code for answer in answers] == [200] * 10
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers] == [
        str(1000 - 4 - n) for n in range(10)
    ]
    # The count and its time to live come back together: the headers need no more calls.
    assert len(commands) == 10, commands
    assert all(command.startswith("EVALSHA ") for command in commands), commands


def anonymous_snap(service: Service, image: bytes) -> requests.Response:
    return requests.post(
        f"{service.url}/v1/snaps",
        files={"image": ("photo.jpg", image, "image/jpeg")},
        data={"count": "2"},
        timeout=30,
    )


def test_a_snap_checks_all_its_limits_in_one_redis_round_trip(
    start_gateways: Callable[..., list[Service]], redis_server: RedisServer
) -> None:
    (gateway,) = start_gateways(
        REDIS_URL=redis_server.url,
        RATE_LIMIT_DEFAULT="1000/minute",
        RATE_LIMIT_AI="1000/minute",
        AI_DAILY_QUOTA="5/day",
    )
    image = photo(320, 240)
    assert anonymous_snap(gateway, image).status_code == 201  # scripts loaded, pools warm

    # Three windows (default, ai, and the quota read): one round trip, before anything else.
    watching = RoundTrips(redis_server)
    refused = anonymous_snap(gateway, b"this is not an image")
    commands = watching.stop()
    assert refused.status_code == 415
    assert len(commands) == 1, commands
    assert commands[0].startswith("EVALSHA "), commands
    # Nothing delivered, nothing charged: the quota read in that round trip is the header.
    assert refused.headers["X-RateLimit-Limit"] == "5"
    assert refused.headers["X-RateLimit-Remaining"] == "4"

    # Delivered: the same one check, then the quota's charge, which brings back its count.
    watching = RoundTrips(redis_server)
    delivered = anonymous_snap(gateway, image)
    commands = watching.stop()
    assert delivered.status_code == 201
    assert len(commands) == 2, commands
    assert all(command.startswith("EVALSHA ") for command in commands), commands
    assert delivered.headers["X-RateLimit-Limit"] == "5"
    assert delivered.headers["X-RateLimit-Remaining"] == "3"
    assert delivered.headers["RateLimit-Policy"] == "1000;w=60, 1000;w=60, 5;w=86400"
