"""CPU time and resident memory of a service: its gunicorn master plus every worker.

A pod's memory limit applies to the whole process tree, so memory is the sum over the
tree. CPU is summed the same way, in core-seconds, so a delta over a load phase divided
by the snaps served is the CPU one snap costs that service.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import psutil


@dataclass(frozen=True)
class TreeUsage:
    rss_bytes: int
    cpu_seconds: float
    processes: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def tree_usage(pid: int) -> TreeUsage:
    """RSS and CPU of ``pid`` and its descendants (processes that vanish are skipped)."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return TreeUsage(0, 0.0, 0)
    rss = 0
    cpu = 0.0
    counted = 0
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied), member.oneshot():
            rss += member.memory_info().rss
            times = member.cpu_times()
            cpu += times.user + times.system
            counted += 1
    return TreeUsage(rss, cpu, counted)


def usage_delta(before: TreeUsage, after: TreeUsage) -> float:
    """CPU core-seconds spent between two readings of the same tree."""
    return max(0.0, after.cpu_seconds - before.cpu_seconds)


def mebibytes(value: float) -> float:
    return round(value / (1024 * 1024), 1)
