"""Liveness and readiness.

``/healthz`` on the service port answers from the process alone, so a slow dependency
never gets a healthy pod killed. It is served by the request threads, though, so a pod
whose threads all wait on a slow upstream answers it only when a thread frees up: the
kubelet's liveness probe asks the gunicorn master instead (``/healthz`` on the metrics
port, :func:`master_liveness`), which answers from its own listener thread whatever the
workers are doing. ``/readyz`` runs the service's registered checks (each bounded by a
timeout) and answers 503 with the failing checks while any dependency is unusable, so
the pod leaves the load balancer instead of failing requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

import structlog
from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from chassis.errors import error_response

ReadinessCheck = Callable[[], None]
"""A check raises (anything) when its dependency is not usable."""

log = structlog.get_logger("chassis.health")
blueprint = Blueprint("chassis_health", __name__)
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")


def add_readiness_check(app: Flask, name: str, check: ReadinessCheck) -> None:
    app.extensions.setdefault("chassis_readiness", {})[name] = check


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    checks: dict[str, ReadinessCheck] = current_app.extensions.get("chassis_readiness", {})
    timeout = current_app.config["SETTINGS"].readiness_timeout_seconds
    futures = {name: _executor.submit(check) for name, check in checks.items()}
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            results[name] = "ok"
        except FutureTimeout:
            results[name] = "timeout"
        except Exception as error:
            results[name] = "failed"
            log.warning("readiness_check_failed", check=name, error=str(error))
    if all(state == "ok" for state in results.values()):
        return jsonify(status="ready", checks=results)
    return error_response(
        503, "not_ready", "A dependency is not usable.", details={"checks": results}
    )


class _Heartbeat(Protocol):
    def last_update(self) -> float: ...


class _Worker(Protocol):
    tmp: _Heartbeat


def master_liveness(
    workers: Mapping[int, _Worker], *, timeout: float, now: float | None = None
) -> tuple[bool, dict[str, Any]]:
    """Whether the pod is alive, judged by the gunicorn master from its workers' heartbeats.

    Every gthread worker touches its heartbeat file (``worker.tmp``) at least once a
    second from its main loop, also while every request thread is busy; the master
    kills a worker that stayed silent for longer than gunicorn's ``timeout`` and starts
    another. The pod is alive while at least one worker heartbeats within that timeout
    and none is past it: a worker past it means the master no longer replaces silent
    workers, which only a restart of the container mends. A worker that has not sent
    its first heartbeat yet is booting (its file still carries its wall-clock creation
    time, far ahead of the monotonic clock heartbeats use) and is neither.
    """
    now = time.monotonic() if now is None else now
    report: list[dict[str, Any]] = []
    heartbeating = stale = 0
    for pid, worker in sorted(dict(workers).items()):
        try:
            last = worker.tmp.last_update()
        except (OSError, ValueError):
            continue
        if last > now + 1.0:
            report.append({"pid": pid, "state": "booting"})
            continue
        age = max(0.0, now - last)
        state = "heartbeating" if age <= timeout else "stale"
        heartbeating += state == "heartbeating"
        stale += state == "stale"
        report.append({"pid": pid, "state": state, "heartbeat_age_seconds": round(age, 3)})
    alive = heartbeating > 0 and stale == 0
    return alive, {
        "status": "ok" if alive else "not_alive",
        "workers": report,
        "worker_timeout_seconds": timeout,
    }
