"""The hot-path goals of issue 15, judged from one run's figures, side by side.

The issue states its goals as ratios over figures the scenarios already measure (the
gateway hop, the snap mix's knee and soak, intake, the observability overhead), so
this module measures nothing: it reads a run's result document, pairs the figures as
the issue words them and judges each pair with :mod:`bench.goals`, so an impossible
figure is reported invalid, never met. A row whose figure the run lacks (a partial run,
or a run recorded before the figure existed) says "not run" rather than guessing.

The knee's goal is relative to the issue's starting point measured on the same machine:
a knee measured on other cores says nothing about the change, and the previous run is a
moving target (each improvement would raise the bar for the next run). The starting
point is the commit whose ``make bench`` the issue quotes (:data:`ISSUE_START_COMMIT`);
a knee-only run of it on this machine is kept in bench/results/ (bench/README.md says
how it was made). Without one, the previous recorded run on the same machine is the
baseline, and the row says so. The run records which file it compared with
(``knee_baseline`` in its document) so re-rendering its Markdown later, after newer runs
were recorded, still compares with the same baseline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.goals import INVALID, NON_NEGATIVE, impossible, judge

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
TITLE = "Issue goals: hot paths"
NOT_RUN = "not run"
NO_BASELINE = "no baseline"
# A proxy passes at most what the server passes alone (a little above 1 is noise).
THROUGHPUT_RATIO_RANGE = (0.0, 1.25)
# Observability adds work: CPU per snap can fall by at most all of it, and throughput
# with it on can rise only by the noise a ratio of 1.25 allows (as for a proxy).
CPU_CHANGE_RANGE = (-100.0, math.inf)
THROUGHPUT_CHANGE_RANGE = (-100.0, 25.0)
KNEE_FACTOR = 1.8
ISSUE_START_COMMIT = "90e828eedcbc45d72855ab3be9e43861b04abdd3"
MACHINE_KEYS = ("cores", "cpu_model", "memory_gib")

Row = dict[str, Any]


def figures_of(document: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A scenario's figures, or None if it did not run or failed."""
    entry = (document.get("scenarios") or {}).get(name) or {}
    if entry.get("status") != "ok":
        return None
    return (entry.get("result") or {}).get("figures") or None


def ratio(numerator: Any, denominator: Any) -> float | None:
    """``numerator / denominator``, None where either is missing or the divisor is 0."""
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float):
        return None
    if denominator == 0:
        return None
    return round(numerator / denominator, 3)


def verdict(
    checks: list[tuple[Any, str, float, tuple[float, float]]],
) -> tuple[bool | str, str | None]:
    """All checks met, or the first impossible figure's reason (then the row is invalid)."""
    met = True
    for value, comparison, limit, valid in checks:
        reason = impossible(value, valid)
        if reason is not None:
            return INVALID, reason
        met = bool(judge(value, comparison, limit, valid)) and met
    return met, None


def row(
    measure: str,
    goal: str,
    scenario: str,
    measured: str,
    checks: list[tuple[Any, str, float, tuple[float, float]]] | None,
) -> Row:
    """One row; ``checks`` None means the run lacks the figure (not run)."""
    if checks is None:
        return {
            "measure": measure,
            "goal": goal,
            "measured": measured,
            "met": NOT_RUN,
            "scenario": scenario,
        }
    met, reason = verdict(checks)
    entry: Row = {
        "measure": measure,
        "goal": goal,
        "measured": measured,
        "met": met,
        "scenario": scenario,
        "values": [value for value, *_ in checks],
    }
    if reason is not None:
        entry["invalid_because"] = reason
    return entry


def number(value: Any, suffix: str = "") -> str:
    """A figure as shown; a ratio ("x") to three significant digits."""
    if value is None:
        return "—"
    return f"{value:.3g}x" if suffix == "x" else f"{value:g}{suffix}"


def proxied_small_request_cpu(document: dict[str, Any]) -> Row:
    hop = figures_of(document, "gateway_hop") or {}
    gateway, nginx = hop.get("gateway_cpu_ms_per_request"), hop.get("nginx_cpu_ms_per_request")
    value = ratio(gateway, nginx)
    present = gateway is not None and nginx is not None
    return row(
        "gateway CPU per proxied small request / nginx's",
        "<= 8x",
        "gateway_hop",
        f"{number(value, 'x')} ({gateway} / {nginx} ms)" if present else NOT_RUN,
        [(value, "<=", 8.0, NON_NEGATIVE)] if present else None,
    )


def gateway_throughput(document: dict[str, Any]) -> Row:
    value = (figures_of(document, "gateway_hop") or {}).get("gateway_rps_vs_direct")
    return row(
        "gateway throughput / direct (16 connections)",
        ">= 0.6",
        "gateway_hop",
        number(value) if value is not None else NOT_RUN,
        [(value, ">=", 0.6, THROUGHPUT_RATIO_RANGE)] if value is not None else None,
    )


def gateway_added_latency(document: dict[str, Any]) -> Row:
    hop = figures_of(document, "gateway_hop") or {}
    p50, p99 = hop.get("gateway_added_p50_ms"), hop.get("gateway_added_p99_ms")
    present = p50 is not None and p99 is not None
    return row(
        "gateway added latency p50 / p99, 1 connection",
        "<= 1.5 ms / <= 5 ms",
        "gateway_hop",
        f"{number(p50)} / {number(p99)} ms" if present else NOT_RUN,
        [(p50, "<=", 1.5, NON_NEGATIVE), (p99, "<=", 5.0, NON_NEGATIVE)] if present else None,
    )


def snap_cpu_seconds(document: dict[str, Any]) -> tuple[dict[str, float] | None, str]:
    """CPU seconds per snap per service: the soak's steady state, else the knee step.

    The same choice as the sizing (bench/sizing.py). Each is the snap mix, so a snap's
    figure includes the presets GET and the thumbnail GET the app sends with it.
    """
    soak = (figures_of(document, "soak") or {}).get("cpu_seconds_per_snap")
    if soak:
        return soak, "soak"
    knee = (figures_of(document, "knee") or {}).get("knee_cpu_seconds_per_snap")
    if knee:
        return knee, "knee"
    return None, "soak or knee"


def full_decode_ms(document: dict[str, Any]) -> tuple[float | None, str]:
    """intake's one full decode of a 12 MP JPEG: its CPU time if recorded, else wall."""
    intake = figures_of(document, "intake") or {}
    upright = intake.get("upright") or {}
    photo = intake.get("photo") or {}
    size = f"{photo.get('width')}x{photo.get('height')}"
    if upright.get("full_decode_cpu_ms_median") is not None:
        return upright["full_decode_cpu_ms_median"], f"CPU of one full decode, {size}"
    if upright.get("full_decode_ms_median") is not None:
        return upright["full_decode_ms_median"], f"wall time of one full decode, {size}"
    return None, ""


def snap_cpu_vs_decode(document: dict[str, Any]) -> Row:
    per_snap, source = snap_cpu_seconds(document)
    decode, what = full_decode_ms(document)
    measured, checks = NOT_RUN, None
    if per_snap is not None and decode is not None:
        stack_ms = round(1000 * sum(per_snap.values()), 1)
        value = ratio(stack_ms, decode)
        measured = f"{number(value, 'x')} ({stack_ms} ms, all services / {decode} ms, {what})"
        checks = [(value, "<=", 1.0, NON_NEGATIVE)]
    return row(
        "stack CPU per 12 MP snap / one full decode of that photo",
        "<= 1.0x",
        f"{source} + intake",
        measured,
        checks,
    )


def gateway_snap_vs_small_request(document: dict[str, Any]) -> Row:
    per_snap, source = snap_cpu_seconds(document)
    small = (figures_of(document, "gateway_hop") or {}).get("gateway_cpu_ms_per_request")
    gateway = (per_snap or {}).get("gateway")
    measured, checks = NOT_RUN, None
    if gateway is not None and small is not None:
        snap_ms = round(1000 * gateway, 1)
        value = ratio(snap_ms, small)
        measured = f"{number(value, 'x')} ({snap_ms} / {small} ms)"
        checks = [(value, "<=", 3.0, NON_NEGATIVE)]
    return row(
        "gateway CPU per snap / its CPU per small proxied request",
        "<= 3x",
        f"{source} + gateway_hop",
        measured,
        checks,
    )


def portrait_upload(document: dict[str, Any]) -> Row:
    """Portrait over landscape CPU, and whether the turn was lossless where measured.

    Lossless is judged only from a figure the run recorded (``lossless`` of intake's
    portrait figures); without one the ratio alone cannot meet the goal.
    """
    intake = figures_of(document, "intake") or {}
    value = intake.get("portrait_over_landscape_cpu_per_upload")
    measure = "portrait (EXIF orientation 6) upload CPU / the same photo landscape"
    goal = "<= 1.1x, and lossless"
    if value is None:
        return row(measure, goal, "intake", NOT_RUN, None)
    portrait = intake.get("rotated_orientation_6") or {}
    upright = intake.get("upright") or {}
    lossless = portrait.get("lossless")
    cpu = (
        f"portrait {portrait.get('accept_cpu_ms_median')} / "
        f"landscape {upright.get('accept_cpu_ms_median')} ms"
    )
    checked = row(measure, goal, "intake", "", [(value, "<=", 1.1, NON_NEGATIVE)])
    if lossless is None:
        checked["measured"] = f"{number(value, 'x')} ({cpu}); lossless: {NOT_RUN}"
        if checked["met"] is True:
            checked["met"] = NOT_RUN
        return checked
    checked["measured"] = f"{number(value, 'x')} ({cpu}); lossless: {'yes' if lossless else 'no'}"
    if checked["met"] is True:
        checked["met"] = lossless is True
    return checked


def thumbnail_cpu(document: dict[str, Any]) -> Row:
    thumbnail = (figures_of(document, "gateway_hop") or {}).get("thumbnail") or {}
    value = thumbnail.get("gateway_cpu_vs_direct")
    present = "gateway_cpu_vs_direct" in thumbnail
    return row(
        "gateway CPU per proxied thumbnail GET / upload-svc's CPU serving it directly",
        "<= 1.0x",
        "gateway_hop",
        f"{number(value, 'x')} ({thumbnail.get('gateway_cpu_ms_per_request')} / "
        f"{thumbnail.get('upload_svc_cpu_ms_per_request_direct')} ms)"
        if present
        else NOT_RUN,
        [(value, "<=", 1.0, NON_NEGATIVE)] if present else None,
    )


def observability(document: dict[str, Any]) -> Row:
    overhead = figures_of(document, "overhead") or {}
    cpu = overhead.get("cpu_per_snap_cost_percent")
    lost = overhead.get("throughput_cost_percent")
    present = cpu is not None and lost is not None
    change = None if lost is None else round(-lost, 1)
    return row(
        "observability on vs off: CPU per snap, and throughput",
        "<= +5%, >= -5%",
        "overhead",
        f"CPU per snap {cpu:+g}%, throughput {change:+g}%" if present else NOT_RUN,
        [(cpu, "<=", 5.0, CPU_CHANGE_RANGE), (change, ">=", -5.0, THROUGHPUT_CHANGE_RANGE)]
        if present
        else None,
    )


def same_machine(one: dict[str, Any], other: dict[str, Any]) -> bool:
    return all(one.get(key) == other.get(key) for key in MACHINE_KEYS)


def recorded_knees(results_dir: Path) -> list[dict[str, Any]]:
    """Every recorded full run's knee, oldest first, with its machine."""
    found = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        knee = (figures_of(document, "knee") or {}).get("knee_snaps_per_second")
        if document.get("smoke") or not knee:
            continue
        found.append(
            {
                "json_path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                "commit": (document.get("commit") or {}).get("commit"),
                "started_at": document.get("started_at"),
                "knee_snaps_per_second": knee,
                "machine": {key: (document.get("machine") or {}).get(key) for key in MACHINE_KEYS},
            }
        )
    return found


def knee_baseline(document: dict[str, Any], results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """The issue's starting commit's knee on this machine, the previous run's, the last one.

    A document that recorded its baseline when it ran keeps it; otherwise the recorded
    runs that started before it are searched.
    """
    if "knee_baseline" in document:
        return document["knee_baseline"]
    machine = document.get("machine") or {}
    started = document.get("started_at") or ""
    earlier = [
        run
        for run in recorded_knees(results_dir)
        if run["started_at"] and run["started_at"] < started
    ]
    matching = [run for run in earlier if same_machine(run["machine"], machine)]
    starts = [run for run in matching if run["commit"] == ISSUE_START_COMMIT]
    return {
        "searched": str(
            results_dir.relative_to(ROOT) if results_dir.is_relative_to(ROOT) else results_dir
        ),
        "issue_start": starts[-1] if starts else None,
        "same_machine": matching[-1] if matching else None,
        "last_recorded": earlier[-1] if earlier else None,
    }


def knee_goal(document: dict[str, Any], baseline: dict[str, Any]) -> Row:
    knee = (figures_of(document, "knee") or {}).get("knee_snaps_per_second")
    measure, goal = "knee of the snap mix, snaps/s", f">= {KNEE_FACTOR:g}x the baseline"
    if knee is None:
        return row(measure, goal, "knee", NOT_RUN, None)
    previous = baseline.get("issue_start") or baseline.get("same_machine")
    if previous is None:
        last = baseline.get("last_recorded")
        elsewhere = (
            f"; the last recorded, {last['json_path']} ({last['knee_snaps_per_second']:g}), "
            f"ran on another machine ({last['machine'].get('cpu_model')})"
            if last
            else ""
        )
        return {
            "measure": measure,
            "goal": goal,
            "measured": f"{knee:g}; no earlier run on this machine in "
            f"{baseline.get('searched')}{elsewhere}",
            "met": NO_BASELINE,
            "scenario": "knee",
        }
    value = ratio(knee, previous["knee_snaps_per_second"])
    which = (
        f"the issue's starting commit {ISSUE_START_COMMIT[:7]}"
        if baseline.get("issue_start")
        else "the previous run on this machine"
    )
    return row(
        measure,
        goal,
        f"knee (baseline {previous['json_path']}, {which})",
        f"{knee:g} / {previous['knee_snaps_per_second']:g} = {number(value, 'x')}",
        [(value, ">=", KNEE_FACTOR, NON_NEGATIVE)],
    )


ROWS: tuple[Callable[[dict[str, Any]], Row], ...] = (
    proxied_small_request_cpu,
    gateway_throughput,
    gateway_added_latency,
    snap_cpu_vs_decode,
    gateway_snap_vs_small_request,
    portrait_upload,
    thumbnail_cpu,
    observability,
)


def hot_path_rows(document: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[Row]:
    """The issue's rows in its order, each judged from ``document``'s figures."""
    rows = [build(document) for build in ROWS]
    return [*rows, knee_goal(document, baseline or knee_baseline(document))]
