"""Limits and idempotency that hold on one machine: two gateway workers, as ``make run``.

Without Redis the workers share one SQLite file (gateway/local_store.py); with Redis they
share Redis. Either way the behaviour is the same: 60/minute is 60, not 60 per worker,
and one Idempotency-Key is one snap. Fresh connections per request spread the requests
over both workers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
import requests

from testbed.images import photo
from testbed.processes import Service
from testbed.servers import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(params=["machine", "redis"])
def two_workers(
    request: pytest.FixtureRequest,
    start_gateways: Callable[..., list[Service]],
    redis_server: RedisServer,
) -> Service:
    env = {"REDIS_URL": redis_server.url} if request.param == "redis" else {}
    (gateway,) = start_gateways(1, workers=2, threads=4, **env)
    return gateway


def test_75_requests_in_a_minute_get_429_after_the_60th(two_workers: Service) -> None:
    statuses = []
    for _ in range(75):
        with requests.Session() as session:  # a new connection each: both workers serve
            statuses.append(session.get(f"{two_workers.url}/v1/presets", timeout=10).status_code)
    assert statuses == [200] * 60 + [429] * 15


def test_one_idempotency_key_eight_times_is_one_snap(two_workers: Service) -> None:
    key = secrets.token_hex(16)
    image = photo()
    answers = []
    for _ in range(8):
        with requests.Session() as session:
            answers.append(
                session.post(
                    f"{two_workers.url}/v1/snaps",
                    files={"image": ("p.jpg", image, "image/jpeg")},
                    data={"template": "social_post"},
                    headers={"Idempotency-Key": key},
                    timeout=60,
                )
            )
    assert [answer.status_code for answer in answers] == [201] * 8
    replayed = [answer.headers.get("Idempotency-Replayed") == "true" for answer in answers]
    assert replayed == [False] + [True] * 7
    assert len({answer.json()["upload"]["id"] for answer in answers}) == 1
