"""Drive locust headless as a subprocess and read back what it measured.

locust runs ``bench/locustfile.py`` (the app's snap mix) for a fixed time at a fixed
number of users and exits; the locustfile writes locust's final statistics as JSON at
quit, which this module turns into numbers. (locust's ``--csv`` files are kept for
people to read, but they are rewritten once a second during the run and miss its last
second, so they are not the source of the figures.) Its own CPU time is measured too:
the load generator shares the machine's cores with the services, and the results say
how much of them it took.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.photos import fresh_variants

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
SNAP = "POST /v1/snaps"
AGGREGATED = "Aggregated"


Sample = tuple[float, float, bool]  # start (s after the test started), milliseconds, ok


@dataclass(frozen=True)
class RequestStats:
    """Counts and latency percentiles (milliseconds) of one kind of request."""

    name: str
    requests: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    max: float | None

    @property
    def ok(self) -> int:
        return self.requests - self.failures

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest_rank(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def stats_of(name: str, samples: list[Sample]) -> RequestStats:
    times = sorted(sample[1] for sample in samples)
    return RequestStats(
        name=name,
        requests=len(samples),
        failures=sum(1 for sample in samples if not sample[2]),
        p50=nearest_rank(times, 0.50),
        p95=nearest_rank(times, 0.95),
        p99=nearest_rank(times, 0.99),
        mean=round(sum(times) / len(times), 1) if times else None,
        max=times[-1] if times else None,
    )


@dataclass
class LoadRun:
    """One locust run, measured over its steady window ``[trim, end]``.

    Closed-loop users all start at once, and locust drops the requests in flight when
    its time is up, so the first seconds and the cut-off end are not steady state.
    Throughput counts successful requests *completed* inside the window; latencies and
    errors are of requests *started* inside it.
    """

    label: str
    users: int
    seconds: float
    trim: float
    end: float
    user_rate: float | None
    command: list[str]
    samples: dict[str, list[Sample]]
    failures: list[dict[str, str]]
    wall_seconds: float
    loadgen_cpu_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> float:
        return max(1e-6, self.end - self.trim)

    def started_in_window(self, name: str | None = None) -> list[Sample]:
        names = [name] if name else list(self.samples)
        return [
            sample
            for key in names
            for sample in self.samples.get(key, [])
            if self.trim <= sample[0] <= self.end
        ]

    def completed_ok(self, name: str) -> int:
        return sum(
            1
            for start, milliseconds, ok in self.samples.get(name, [])
            if ok and self.trim <= start + milliseconds / 1000 <= self.end
        )

    def ok_in_run(self, name: str) -> int:
        """Successful requests over the whole run, trim included (what CPU was spent on)."""
        return sum(1 for sample in self.samples.get(name, []) if sample[2])

    @property
    def snaps(self) -> RequestStats:
        return stats_of(SNAP, self.started_in_window(SNAP))

    @property
    def total(self) -> RequestStats:
        return stats_of(AGGREGATED, self.started_in_window())

    def summary(self) -> dict[str, Any]:
        snap = self.snaps
        total = self.total
        completed = sum(self.completed_ok(name) for name in self.samples)
        return {
            "label": self.label,
            "users": self.users,
            "seconds": self.seconds,
            "window_seconds": round(self.window, 2),
            "snaps": snap.requests,
            "snaps_failed": snap.failures,
            "snaps_per_second": round(self.completed_ok(SNAP) / self.window, 3),
            "snap_p50_ms": snap.p50,
            "snap_p95_ms": snap.p95,
            "snap_p99_ms": snap.p99,
            "snap_max_ms": snap.max,
            "requests": total.requests,
            "requests_per_second": round(completed / self.window, 3),
            "p50_ms": total.p50,
            "p95_ms": total.p95,
            "p99_ms": total.p99,
            "errors": total.failures,
            "error_kinds": self.failures[:5],
            "loadgen_cpu_seconds": round(self.loadgen_cpu_seconds, 2),
            **self.extra,
        }


@dataclass(frozen=True)
class LocustSummary:
    samples: dict[str, list[Sample]]
    errors: list[dict[str, str]]
    stopped_after: float | None


def read_summary(path: Path) -> LocustSummary:
    """The JSON the locustfile writes at quit: every request, and locust's error groups."""
    document = json.loads(path.read_text())
    samples = {
        name: [(float(start), float(milliseconds), bool(ok)) for start, milliseconds, ok in rows]
        for name, rows in (document.get("samples") or {}).items()
    }
    errors = sorted(document.get("errors") or [], key=lambda item: -int(item["count"]))
    started, stopped = document.get("test_start"), document.get("test_stop")
    return LocustSummary(
        samples=samples,
        errors=[{**item, "count": str(item["count"])} for item in errors],
        stopped_after=stopped - started if started and stopped else None,
    )


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def shown(part: str) -> str:
    """A command-line word as recorded: paths relative to the repository."""
    for base in (str(ROOT / ".venv" / "bin") + "/", str(ROOT) + "/"):
        if part.startswith(base):
            return part[len(base) :]
    return part


def run_locust(
    host: str,
    *,
    users: int,
    seconds: float,
    work_dir: Path,
    label: str,
    photos: list[Path],
    user_rate: float | None = None,
    trim: float = 0.0,
    spawn_rate: float | None = None,
) -> LoadRun:
    """One headless locust run of ``trim + seconds``, measured over its last ``seconds``.

    Every snap in it sends a photo no earlier run sent.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    prefix = work_dir / label
    summary_path = work_dir / f"{label}_summary.json"
    summary_path.unlink(missing_ok=True)
    run_seconds = max(1, math.ceil(seconds + trim))
    command = [
        str(Path(sys.executable).parent / "locust"),
        *("-f", str(LOCUSTFILE), "--headless"),
        *("-u", str(users), "-r", f"{spawn_rate or users:g}", "-t", f"{run_seconds}s"),
        *("--host", host, "--csv", str(prefix), "--only-summary"),
        *("--exit-code-on-error", "0", "--stop-timeout", "0", "--loglevel", "WARNING"),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "BENCH_PHOTOS": os.pathsep.join(str(path) for path in photos),
        "BENCH_VARIANT_OFFSET": str(fresh_variants()),
        "BENCH_USER_RATE": "" if user_rate is None else f"{user_rate:.6f}",
        "BENCH_SUMMARY": str(summary_path),
    }
    cpu_before = children_cpu_seconds()
    started = time.monotonic()
    with (work_dir / f"{label}.log").open("ab") as log:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=run_seconds + 60,
            check=False,
        )
    wall = time.monotonic() - started
    if completed.returncode != 0 or not summary_path.exists():
        tail = (work_dir / f"{label}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"locust exited with {completed.returncode}: {tail}")
    found = read_summary(summary_path)
    return LoadRun(
        label=label,
        users=users,
        seconds=run_seconds,
        trim=trim,
        end=min(run_seconds, found.stopped_after or run_seconds),
        user_rate=user_rate,
        command=[shown(part) for part in command],
        samples=found.samples,
        failures=found.errors,
        wall_seconds=wall,
        loadgen_cpu_seconds=children_cpu_seconds() - cpu_before,
    )
