"""The gunicorn master's liveness verdict from its workers' heartbeats."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import requests

from chassis.health import master_liveness
from chassis.metrics import serve_master_endpoints
from testbed.processes import free_port

NOW = 1000.0


@dataclass
class Heartbeat:
    last: float

    def last_update(self) -> float:
        return self.last


@dataclass
class Worker:
    tmp: Heartbeat


def workers(*lasts: float) -> dict[int, Worker]:
    return {100 + index: Worker(Heartbeat(last)) for index, last in enumerate(lasts)}


def test_alive_while_every_worker_heartbeats_within_the_timeout() -> None:
    alive, report = master_liveness(workers(NOW - 0.4, NOW - 59), timeout=60, now=NOW)
    assert alive
    assert report["status"] == "ok"
    assert [w["state"] for w in report["workers"]] == ["heartbeating", "heartbeating"]
    assert report["workers"][1]["heartbeat_age_seconds"] == 59


def test_not_alive_when_a_worker_is_past_the_timeout_the_master_should_enforce() -> None:
    alive, report = master_liveness(workers(NOW - 0.4, NOW - 61), timeout=60, now=NOW)
    assert not alive
    assert report["status"] == "not_alive"
    assert [w["state"] for w in report["workers"]] == ["heartbeating", "stale"]


def test_not_alive_without_any_worker_or_with_only_booting_ones() -> None:
    assert not master_liveness({}, timeout=60, now=NOW)[0]
    # A worker that never heartbeated still carries its wall-clock creation time.
    alive, report = master_liveness(workers(time.time()), timeout=60, now=NOW)
    assert not alive
    assert report["workers"][0]["state"] == "booting"
    # One booting worker beside a heartbeating one (a recycled worker) is fine.
    assert master_liveness(workers(NOW - 1, time.time()), timeout=60, now=NOW)[0]


def test_master_endpoints_answer_liveness_and_nothing_else_without_metrics() -> None:
    verdict = {"alive": True}
    port = free_port()
    server = serve_master_endpoints(
        "127.0.0.1", port, None, lambda: (verdict["alive"], {"status": "x"})
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
        verdict["alive"] = False
        failing = requests.get(f"{base}/healthz", timeout=2)
        assert failing.status_code == 503
        assert json.loads(failing.text) == {"status": "x"}
        missing = requests.get(f"{base}/metrics", timeout=2)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
    finally:
        server.shutdown()
        server.server_close()
