"""Scenario 1: the snap mix at rising concurrency, up to the knee.

One pod of each service (the chart's default workers and threads) serves the app's
snap mix (presets, a snap with a distinct 12 MP JPEG, its thumbnail) from closed-loop
users with no think time. The unloaded p99 of a snap is measured with one user; then the
number of users rises step by step until the snap p99 passes ``knee_p99_factor`` times
that (or errors pass 1%). The knee is the last step that stayed under: its snaps per
second is what one pod of each service sustains before users feel the queueing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.phases import load_phase
from bench.photos import photo_pool, priming_photo
from bench.settings import BenchSettings
from bench.stack import scenario_stack

NAME = "knee"
TITLE = "Snap mix: the knee (snaps/s per pod)"


def error_ratio(step: dict[str, Any]) -> float:
    requests = step["requests"] or 0
    return (step["errors"] or 0) / requests if requests else 0.0


def within(step: dict[str, Any], ceiling_ms: float, max_error_ratio: float) -> bool:
    p99 = step["snap_p99_ms"]
    if step["snaps"] == 0 or p99 is None:
        return False
    return p99 <= ceiling_ms and error_ratio(step) <= max_error_ratio


def run(out_dir: Path, smoke: bool, settings: BenchSettings | None = None) -> dict[str, Any]:
    settings = settings or BenchSettings.for_run(smoke)
    cores = os.cpu_count() or 1
    started = time.monotonic()
    photos = photo_pool(out_dir.parent / "photos", settings.photo_pool, settings.photo_size)
    steps: list[dict[str, Any]] = []
    with scenario_stack(out_dir / "stack", settings, priming_photo=priming_photo(photos)) as stack:
        phase = {
            "work_dir": out_dir / "locust",
            "photos": photos,
            "cores": cores,
            "trim": settings.knee_trim_seconds,
        }
        _, baseline = load_phase(
            stack, users=1, seconds=settings.knee_baseline_seconds, label="users-1", **phase
        )
        steps.append(baseline)
        unloaded_p99 = baseline["snap_p99_ms"]
        ceiling = (unloaded_p99 or 0.0) * settings.knee_p99_factor
        knee = baseline if within(baseline, ceiling, settings.knee_max_error_ratio) else None
        passed_at: int | None = None
        reason = "levels exhausted"
        for level in settings.knee_levels:
            if time.monotonic() - started > settings.knee_budget_seconds:
                reason = "time budget"
                break
            _, step = load_phase(
                stack,
                users=level,
                seconds=settings.knee_step_seconds,
                label=f"users-{level}",
                **phase,
            )
            steps.append(step)
            if not within(step, ceiling, settings.knee_max_error_ratio):
                passed_at = level
                reason = "errors" if error_ratio(step) > settings.knee_max_error_ratio else "p99"
                break
            knee = step
        config = stack.config
    best = max(steps, key=lambda step: step["snaps_per_second"])
    knee = knee or baseline
    figures = {
        "unloaded_snap_p99_ms": unloaded_p99,
        "unloaded_snap_p50_ms": baseline["snap_p50_ms"],
        "p99_ceiling_ms": ceiling,
        "knee_concurrency": knee["users"],
        "knee_snaps_per_second": knee["snaps_per_second"],
        "knee_snap_p50_ms": knee["snap_p50_ms"],
        "knee_snap_p95_ms": knee["snap_p95_ms"],
        "knee_snap_p99_ms": knee["snap_p99_ms"],
        "knee_p99_ms": knee["p99_ms"],
        "knee_errors": knee["errors"],
        "knee_requests": knee["requests"],
        "knee_cpu_seconds_per_snap": {
            name: service["cpu_seconds_per_snap"] for name, service in knee["services"].items()
        },
        "knee_services_cpu_cores": knee["services_cpu_cores"],
        "knee_loadgen_cpu_cores": knee["loadgen_cpu_cores"],
        "knee_gemini_calls_per_snap": knee.get("gemini_calls_per_snap"),
        "passed_at_concurrency": passed_at,
        "stop_reason": reason,
        # Stopped before p99 or errors passed their bound: the real knee is higher.
        "knee_is_lower_bound": passed_at is None,
        "max_snaps_per_second": best["snaps_per_second"],
        "max_at_concurrency": best["users"],
    }
    return {
        "scenario": NAME,
        "title": TITLE,
        "command": f"python -m bench.run --only {NAME}",
        "inputs": {
            "cores": cores,
            "users_baseline": 1,
            "levels": list(settings.knee_levels),
            "step_seconds": settings.knee_step_seconds,
            "baseline_seconds": settings.knee_baseline_seconds,
            "trim_seconds": settings.knee_trim_seconds,
            "p99_factor": settings.knee_p99_factor,
            "photo_size": list(settings.photo_size),
            "photo_pool": settings.photo_pool,
            "mix": "per iteration: GET /v1/presets, POST /v1/snaps (distinct JPEG), "
            "GET thumbnail; closed loop, no think time",
            "stack": config,
        },
        "figures": figures,
        "table": [
            {
                "metric": "knee (snaps/s per pod)",
                "value": figures["knee_snaps_per_second"],
                "goal": f"highest step with snap p99 <= {settings.knee_p99_factor:g}x unloaded",
                "met": None,
            },
            {
                "metric": "users at the knee",
                "value": figures["knee_concurrency"],
                "goal": None,
                "met": None,
            },
            {
                "metric": "unloaded snap p50 / p99 (ms, 1 user)",
                "value": f"{fmt(baseline['snap_p50_ms'])} / {fmt(unloaded_p99)}",
                "goal": None,
                "met": None,
            },
            {
                "metric": "snap p50 / p95 / p99 at the knee (ms)",
                "value": " / ".join(
                    fmt(knee[key]) for key in ("snap_p50_ms", "snap_p95_ms", "snap_p99_ms")
                ),
                "goal": f"p99 <= {fmt(ceiling)}",
                "met": knee["snap_p99_ms"] is not None and knee["snap_p99_ms"] <= ceiling,
            },
            {
                "metric": "errors at the knee",
                "value": f"{knee['errors']} of {knee['requests']} requests",
                "goal": "<= 1%",
                "met": error_ratio(knee) <= settings.knee_max_error_ratio,
            },
            {
                "metric": "peak throughput (snaps/s)",
                "value": f"{best['snaps_per_second']} at {best['users']} users",
                "goal": None,
                "met": None,
            },
        ],
        "steps": steps,
        "duration_seconds": round(time.monotonic() - started, 1),
    }


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"
