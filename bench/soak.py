"""Scenario 3: a soak at half the knee, for errors and memory growth.

Ten minutes (``--soak-seconds``) of the snap mix paced at half the knee's snaps per
second: the load a pod runs at when the HPA holds it at its target. Any error counts.
Memory is the resident set of each service's whole process tree (gunicorn master and
workers), read after a warm-up (so start-up allocations and first-request imports are
not counted as growth) and again at the end, with samples in between; a leak shows as
steady growth, which the goal bounds at 10%.

The same run yields the sizing inputs that need a steady state: CPU seconds per snap
per service, and the mean number of requests each service holds in flight (from its own
request-duration histogram: busy seconds per second, Little's law).
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench.phases import load_phase
from bench.photos import photo_pool, priming_photo
from bench.scraper import Scraper, busy_between
from bench.settings import BenchSettings
from bench.stack import BenchStack, scenario_stack
from testbed.resources import mebibytes

NAME = "soak"
TITLE = "Soak at half the knee: errors and memory"
GROWTH_GOAL_PERCENT = 10.0
DEFAULT_RATE = 1.0
PACE_SECONDS = 4.0  # each paced user starts an iteration at most every 4 s


def soak_rate(settings: BenchSettings, knee: dict[str, Any] | None) -> tuple[float, str]:
    if settings.soak_rate:
        return settings.soak_rate, "--soak-rate"
    knee_rate = ((knee or {}).get("figures") or {}).get("knee_snaps_per_second")
    if knee_rate:
        return round(knee_rate / 2, 3), "half the knee measured in this run"
    return DEFAULT_RATE, f"default {DEFAULT_RATE} snaps/s (no knee in this run)"


class MemorySampler:
    """Every service's tree RSS on an interval, in a background thread."""

    def __init__(self, stack: BenchStack, interval: float) -> None:
        self.stack = stack
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)

    def sample(self) -> dict[str, Any]:
        usage = self.stack.usage()
        point = {
            "t": round(time.monotonic() - self.started, 1),
            **{name: mebibytes(item.rss_bytes) for name, item in usage.items()},
        }
        self.samples.append(point)
        return point

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 10)


def run(
    out_dir: Path,
    smoke: bool,
    settings: BenchSettings | None = None,
    knee: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = settings or BenchSettings.for_run(smoke)
    cores = os.cpu_count() or 1
    started = time.monotonic()
    rate, rate_source = soak_rate(settings, knee)
    users = max(2, math.ceil(rate * PACE_SECONDS))
    per_user = rate / users
    photos = photo_pool(out_dir.parent / "photos", settings.photo_pool, settings.photo_size)
    with (
        scenario_stack(out_dir / "stack", settings, priming_photo=priming_photo(photos)) as stack,
        Scraper(stack, settings.scrape_interval_seconds) as scraper,
    ):
        # Paced users start spread over one pacing period, not all in the same instant.
        phase = {
            "work_dir": out_dir / "locust",
            "photos": photos,
            "cores": cores,
            "spawn_rate": users / PACE_SECONDS,
        }
        if settings.soak_warmup_seconds > 0:
            load_phase(
                stack,
                users=users,
                seconds=settings.soak_warmup_seconds,
                label="warmup",
                user_rate=per_user,
                **phase,
            )
        start_usage = stack.usage()
        metrics_before = scraper.scrape_once()
        window_started = time.monotonic()
        with MemorySampler(stack, settings.soak_sample_seconds) as sampler:
            sampler.sample()
            _, summary = load_phase(
                stack,
                users=users,
                seconds=settings.soak_seconds,
                label="soak",
                user_rate=per_user,
                **phase,
            )
            end_usage = stack.usage()
            sampler.sample()
        metrics_after = scraper.scrape_once()
        window = time.monotonic() - window_started
        in_flight = {
            name: busy_between(metrics_before.get(name, []), metrics_after.get(name, []), window)
            for name in metrics_after
        }
        config = stack.config
        gauges = scraper.summary()
    memory: dict[str, Any] = {}
    for name, start in start_usage.items():
        end = end_usage.get(name)
        growth = (
            round(100.0 * (end.rss_bytes - start.rss_bytes) / start.rss_bytes, 1)
            if end and start.rss_bytes
            else None
        )
        memory[name] = {
            "start_mib": mebibytes(start.rss_bytes),
            "end_mib": mebibytes(end.rss_bytes) if end else None,
            "growth_percent": growth,
            "second_half_growth_percent": second_half_growth(sampler.samples, name),
            "processes": start.processes,
        }
    errors = summary["errors"]
    figures = {
        "target_snaps_per_second": rate,
        "rate_source": rate_source,
        "users": users,
        "seconds": settings.soak_seconds,
        "snaps": summary["snaps"],
        "snaps_per_second": summary["snaps_per_second"],
        "requests": summary["requests"],
        "errors": errors,
        "error_kinds": summary["error_kinds"],
        "snap_p50_ms": summary["snap_p50_ms"],
        "snap_p95_ms": summary["snap_p95_ms"],
        "snap_p99_ms": summary["snap_p99_ms"],
        "memory": memory,
        "memory_samples_mib": sampler.samples,
        "cpu_seconds_per_snap": {
            name: service["cpu_seconds_per_snap"] for name, service in summary["services"].items()
        },
        "services_cpu_cores": summary["services_cpu_cores"],
        "loadgen_cpu_cores": summary["loadgen_cpu_cores"],
        "in_flight_mean": {name: routes.get("*") for name, routes in in_flight.items()},
        "in_flight_by_route": in_flight,
        "in_flight_gauges": gauges,
        "gemini_calls_per_snap": summary.get("gemini_calls_per_snap"),
    }
    table = [
        {
            "metric": "snaps/s offered / served",
            "value": f"{rate} / {summary['snaps_per_second']}",
            "goal": None,
            "met": None,
        },
        {
            "metric": "errors during the soak",
            "value": f"{errors} of {summary['requests']} requests",
            "goal": "0",
            "met": errors == 0 and summary["requests"] > 0,
        },
        {
            "metric": "snap p50 / p95 / p99 (ms)",
            "value": f"{summary['snap_p50_ms']} / {summary['snap_p95_ms']} / "
            f"{summary['snap_p99_ms']}",
            "goal": None,
            "met": None,
        },
    ]
    for name, item in memory.items():
        table.append(
            {
                "metric": f"{name} RSS start -> end (MiB, master + workers)",
                "value": f"{item['start_mib']} -> {item['end_mib']} ({fmt_growth(item)})",
                "goal": f"<= +{GROWTH_GOAL_PERCENT:g}%",
                "met": item["growth_percent"] is not None
                and item["growth_percent"] <= GROWTH_GOAL_PERCENT,
            }
        )
    return {
        "scenario": NAME,
        "title": TITLE,
        "command": f"python -m bench.run --only {NAME} --soak-seconds {settings.soak_seconds:g}",
        "inputs": {
            "seconds": settings.soak_seconds,
            "warmup_seconds": settings.soak_warmup_seconds,
            "target_snaps_per_second": rate,
            "rate_source": rate_source,
            "users": users,
            "pacing": f"each user at most {per_user:.3f} iterations/s (locust constant_throughput)",
            "memory_sample_seconds": settings.soak_sample_seconds,
            "stack": config,
        },
        "figures": figures,
        "table": table,
        "duration_seconds": round(time.monotonic() - started, 1),
    }


def second_half_growth(samples: list[dict[str, Any]], name: str) -> float | None:
    """Growth from the sample nearest mid-soak to the end: a leak keeps growing there,
    while allocator warm-up (arenas, caches filling) shows up in the first half only."""
    if len(samples) < 3:
        return None
    middle = samples[len(samples) // 2].get(name)
    end = samples[-1].get(name)
    if not middle or end is None:
        return None
    return round(100.0 * (end - middle) / middle, 1)


def fmt_growth(item: dict[str, Any]) -> str:
    growth = item["growth_percent"]
    return "n/a" if growth is None else f"{growth:+}%"
