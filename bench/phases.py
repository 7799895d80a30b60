"""One load phase against a running bench stack, with what each service spent on it.

Latency and throughput come from locust; CPU comes from the services' own process
trees, read before and after, so "CPU per snap" is what each service really burned,
not an estimate; the fake Gemini's call counter shows the snaps truly reached the model
(a stack that silently answered from the local provider would look far faster).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import requests

from bench.console import say
from bench.loadgen import SNAP, LoadRun, run_locust
from bench.stack import BenchStack
from testbed.resources import mebibytes, usage_delta


def gemini_calls(stack: BenchStack) -> dict[str, int] | None:
    """The fake Gemini's call counters: the total and one per API method."""
    with contextlib.suppress(requests.RequestException, ValueError, KeyError, TypeError):
        stats = stack.gemini_stats()
        return {"*": int(stats["calls"]), **{k: int(v) for k, v in stats["by_method"].items()}}
    return None


def load_phase(
    stack: BenchStack,
    *,
    users: int,
    seconds: float,
    work_dir: Path,
    label: str,
    photos: list[Path],
    user_rate: float | None = None,
    cores: int = 1,
    trim: float = 0.0,
    spawn_rate: float | None = None,
) -> tuple[LoadRun, dict[str, Any]]:
    """Run locust once; return the run and its summary with per-service CPU and memory."""
    before = stack.usage()
    helpers_before = stack.helpers_usage()
    calls_before = gemini_calls(stack)
    run = run_locust(
        stack.url,
        users=users,
        seconds=seconds,
        work_dir=work_dir,
        label=label,
        photos=photos,
        user_rate=user_rate,
        trim=trim,
        spawn_rate=spawn_rate,
    )
    after = stack.usage()
    helpers_after = stack.helpers_usage()
    calls_after = gemini_calls(stack)
    ok_snaps = run.ok_in_run(SNAP)
    services: dict[str, Any] = {}
    total_cpu = 0.0
    for name, usage in after.items():
        spent = usage_delta(before[name], usage) if name in before else 0.0
        total_cpu += spent
        services[name] = {
            "cpu_seconds": round(spent, 3),
            "cpu_seconds_per_snap": round(spent / ok_snaps, 4) if ok_snaps else None,
            "rss_mib": mebibytes(usage.rss_bytes),
        }
    wall = max(run.wall_seconds, 1e-6)
    summary = run.summary()
    summary["services"] = services
    summary["snaps_ok_in_run"] = ok_snaps
    summary["services_cpu_cores"] = round(total_cpu / wall, 3)
    summary["loadgen_cpu_cores"] = round(run.loadgen_cpu_seconds / wall, 3)
    helpers_cpu = sum(
        usage_delta(helpers_before[name], usage)
        for name, usage in helpers_after.items()
        if name in helpers_before
    )
    summary["helpers_cpu_cores"] = round(helpers_cpu / wall, 3)
    summary["machine_cpu_share"] = round(
        (total_cpu + run.loadgen_cpu_seconds + helpers_cpu) / wall / cores, 3
    )
    if calls_before is not None and calls_after is not None:
        calls = {key: value - calls_before.get(key, 0) for key, value in calls_after.items()}
        summary["gemini_calls"] = calls
        summary["gemini_calls_per_snap"] = round(calls["*"] / ok_snaps, 3) if ok_snaps else None
    say(
        f"  {label}: {users} users, {summary['snaps_per_second']} snaps/s, snap p50/p99 "
        f"{summary['snap_p50_ms']}/{summary['snap_p99_ms']} ms, "
        f"{summary['errors']}/{summary['requests']} errors, services CPU "
        f"{summary['services_cpu_cores']} cores, locust {summary['loadgen_cpu_cores']}"
    )
    return run, summary
