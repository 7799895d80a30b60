"""Liveness and readiness.

``/healthz`` answers from the process alone, so a slow dependency never gets a healthy
pod killed. ``/readyz`` runs the service's registered checks (each bounded by a
timeout) and answers 503 with the failing checks while any dependency is unusable, so
the pod leaves the load balancer instead of failing requests.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

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
