"""Scenario 2: what observability costs, on and off side by side in one run.

Two identical stacks run at once, sharing one fake Gemini: one with everything a
cluster has on (OpenTelemetry tracing exported over OTLP/HTTP to a local sink, the
Prometheus metrics with a scrape every interval, JSON logs at INFO with one access line
per request), one with all of it off (``OTEL_SDK_DISABLED=true``,
``METRICS_ENABLED=false``, ``LOG_LEVEL=WARNING``). The same snap mix is offered to each
in turn, alternating the order every round so drift on the machine (page cache, thermal,
other tenants) falls on both sides, at a concurrency past the knee, where the pods are
saturated (threads or CPU) and any time or CPU observability adds to a request shows up
as lost snaps per second. CPU seconds per snap, on vs off, is reported next to it.
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench.otlp_sink import OtlpSink
from bench.phases import load_phase
from bench.photos import photo_pool, priming_photo
from bench.scraper import Scraper
from bench.settings import BenchSettings
from bench.stack import OBSERVABILITY_OFF, BenchStack, bench_stack
from testbed.fakes.gemini import FakeGeminiProcess

NAME = "overhead"
TITLE = "Observability overhead: tracing, metrics and logs on vs off"
GOAL_PERCENT = 10.0
DEFAULT_CONCURRENCY = 8


def saturating_concurrency(settings: BenchSettings, knee: dict[str, Any] | None) -> int:
    """Past the knee: where the knee search stopped, else 1.5x the knee's users."""
    if settings.overhead_concurrency:
        return settings.overhead_concurrency
    figures = (knee or {}).get("figures") or {}
    if figures.get("passed_at_concurrency"):
        return int(figures["passed_at_concurrency"])
    if figures.get("knee_concurrency"):
        return max(2, round(figures["knee_concurrency"] * 1.5))
    return DEFAULT_CONCURRENCY


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """All rounds of one side as one measurement (percentiles: the mean over rounds)."""
    seconds = sum(item["window_seconds"] for item in rounds)
    ok_total = sum(item["snaps_per_second"] * item["window_seconds"] for item in rounds)
    cpu: dict[str, float] = {}
    for item in rounds:
        for name, service in item["services"].items():
            cpu[name] = cpu.get(name, 0.0) + service["cpu_seconds"]
    # CPU is read over whole runs, so it is divided by the snaps of whole runs.
    served = sum(item["snaps_ok_in_run"] for item in rounds)
    requests = sum(item["requests"] for item in rounds)
    return {
        "snaps_per_second": round(ok_total / seconds, 3) if seconds else 0.0,
        "snap_p50_ms": mean([item["snap_p50_ms"] for item in rounds]),
        "snap_p95_ms": mean([item["snap_p95_ms"] for item in rounds]),
        "snap_p99_ms": mean([item["snap_p99_ms"] for item in rounds]),
        "errors": sum(item["errors"] for item in rounds),
        "requests": requests,
        "cpu_seconds_per_snap": {
            name: round(spent / served, 4) if served else None for name, spent in cpu.items()
        },
        "cpu_seconds_per_snap_total": round(sum(cpu.values()) / served, 4) if served else None,
    }


def mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(sum(present) / len(present), 1) if present else None


def percent_lower(reference: float | None, measured: float | None) -> float | None:
    if not reference or measured is None:
        return None
    return round(100.0 * (reference - measured) / reference, 1)


def start_in_parallel(
    exits: contextlib.ExitStack, stacks: dict[str, AbstractContextManager[BenchStack]]
) -> dict[str, BenchStack]:
    """Boot both stacks at once (half the wait); whatever started is stopped by ``exits``."""
    with ThreadPoolExecutor(len(stacks)) as pool:
        futures = {name: pool.submit(exits.enter_context, stack) for name, stack in stacks.items()}
        return {name: future.result() for name, future in futures.items()}


def run(
    out_dir: Path,
    smoke: bool,
    settings: BenchSettings | None = None,
    knee: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = settings or BenchSettings.for_run(smoke)
    cores = os.cpu_count() or 1
    started = time.monotonic()
    users = saturating_concurrency(settings, knee)
    photos = photo_pool(out_dir.parent / "photos", settings.photo_pool, settings.photo_size)
    first = priming_photo(photos)
    rounds: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    gemini = FakeGeminiProcess(
        latency=settings.gemini_latency, log_path=out_dir / "fake-gemini.log"
    ).start()
    try:
        with OtlpSink() as sink, contextlib.ExitStack() as exits:
            stacks = start_in_parallel(
                exits,
                {
                    "on": bench_stack(
                        out_dir / "on",
                        settings,
                        observability=True,
                        otlp_endpoint=sink.endpoint,
                        gemini=gemini,
                        priming_photo=first,
                    ),
                    "off": bench_stack(
                        out_dir / "off",
                        settings,
                        observability=False,
                        gemini=gemini,
                        priming_photo=first,
                    ),
                },
            )
            scraper = exits.enter_context(Scraper(stacks["on"], settings.scrape_interval_seconds))
            phase = {
                "work_dir": out_dir / "locust",
                "photos": photos,
                "cores": cores,
                "trim": settings.overhead_trim_seconds,
            }
            for number in range(settings.overhead_rounds):
                order = ("on", "off") if number % 2 == 0 else ("off", "on")
                for mode in order:
                    _, summary = load_phase(
                        stacks[mode],
                        users=users,
                        seconds=settings.overhead_round_seconds,
                        label=f"round-{number + 1}-{mode}",
                        **phase,
                    )
                    rounds[mode].append(summary)
            export = sink.stats()
            scrapes = scraper.summary()
            configs = {mode: stack.config for mode, stack in stacks.items()}
    finally:
        gemini.stop()
    on, off = combine(rounds["on"]), combine(rounds["off"])
    throughput_cost = percent_lower(off["snaps_per_second"], on["snaps_per_second"])
    cpu_cost = (
        None
        if not on["cpu_seconds_per_snap_total"] or not off["cpu_seconds_per_snap_total"]
        else round(
            100.0
            * (on["cpu_seconds_per_snap_total"] - off["cpu_seconds_per_snap_total"])
            / off["cpu_seconds_per_snap_total"],
            1,
        )
    )
    figures = {
        "users": users,
        "on": on,
        "off": off,
        "throughput_cost_percent": throughput_cost,
        "cpu_per_snap_cost_percent": cpu_cost,
        "spans_exported": export,
        "metrics_scrapes": scrapes["scrapes"],
    }
    met = throughput_cost is not None and throughput_cost <= GOAL_PERCENT
    return {
        "scenario": NAME,
        "title": TITLE,
        "command": f"python -m bench.run --only {NAME}",
        "inputs": {
            "users": users,
            "rounds": settings.overhead_rounds,
            "round_seconds": settings.overhead_round_seconds,
            "trim_seconds": settings.overhead_trim_seconds,
            "order": "alternating on/off, off/on",
            "on": "OTLP/HTTP trace export to a local discard sink, metrics scraped every "
            f"{settings.scrape_interval_seconds:g}s, JSON logs at INFO",
            "off": dict(OBSERVABILITY_OFF),
            "stacks": configs,
        },
        "figures": figures,
        "table": [
            {
                "metric": "throughput, on / off (snaps/s)",
                "value": f"{on['snaps_per_second']} / {off['snaps_per_second']}",
                "goal": None,
                "met": None,
            },
            {
                "metric": "throughput lost to observability",
                "value": "n/a" if throughput_cost is None else f"{throughput_cost}%",
                "goal": f"<= {GOAL_PERCENT:g}%",
                "met": met,
            },
            {
                "metric": "CPU per snap, on vs off (all services)",
                "value": (
                    f"{on['cpu_seconds_per_snap_total']} / {off['cpu_seconds_per_snap_total']} s"
                    + ("" if cpu_cost is None else f" ({cpu_cost:+}%)")
                ),
                "goal": None,
                "met": None,
            },
            {
                "metric": "snap p50 / p99, on (ms)",
                "value": f"{on['snap_p50_ms']} / {on['snap_p99_ms']}",
                "goal": None,
                "met": None,
            },
            {
                "metric": "snap p50 / p99, off (ms)",
                "value": f"{off['snap_p50_ms']} / {off['snap_p99_ms']}",
                "goal": None,
                "met": None,
            },
            {
                "metric": "errors, on / off",
                "value": f"{on['errors']} / {off['errors']}",
                "goal": None,
                "met": None,
            },
        ],
        "rounds": rounds,
        "duration_seconds": round(time.monotonic() - started, 1),
    }
