"""CPU time and memory of a process tree: a gunicorn master and its workers, nginx, Redis.

The one reader of process resources for the benchmark and the tests. A pod's memory
limit applies to the whole process tree, so memory is summed over the tree; CPU is
summed the same way, in core-seconds, so a delta over a load phase divided by the
requests served is the CPU one request costs that service. Peak memory per request is
read from the kernel's high-water mark (``VmHWM``), which :func:`reset_peak` brings
back to the current size, so the peak of one request can be told from the process's
history.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

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


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU core-seconds of ``pid`` and its descendants so far."""
    return tree_usage(pid).cpu_seconds


def usage_delta(before: TreeUsage, after: TreeUsage) -> float:
    """CPU core-seconds spent between two readings of the same tree."""
    return max(0.0, after.cpu_seconds - before.cpu_seconds)


def tree_run_seconds(pid: int) -> float:
    """CPU core-seconds of ``pid``'s tree to the nanosecond, from the scheduler's own count.

    :func:`tree_cpu_seconds` is read from ``/proc/<pid>/stat`` in clock ticks (10 ms),
    fine for a load phase but not for one ~100 ms request. This sums
    ``/proc/<pid>/task/<tid>/schedstat`` over every thread of the tree instead. A thread
    that has exited no longer counts, so call it around work done by threads that live
    on (a gunicorn gthread worker's pool, upload-svc's storage threads).
    """
    try:
        root = psutil.Process(pid)
        members = [root.pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for member in members:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{member}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (a gunicorn master's workers)."""
    return [child.pid for child in psutil.Process(pid).children()]


def status_kib(pid: int, field: str) -> int:
    """One memory field of /proc/<pid>/status, such as ``VmRSS`` or ``VmHWM``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Bring the peak resident size (VmHWM) of ``pid`` back to its current size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def mebibytes(value: float) -> float:
    return round(value / (1024 * 1024), 1)
