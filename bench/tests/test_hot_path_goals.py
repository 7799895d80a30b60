"""Issue 15's goal rows, judged from a run's figures: met, missed, impossible, not run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.goals import INVALID
from bench.hot_path_goals import (
    ISSUE_START_COMMIT,
    NO_BASELINE,
    NOT_RUN,
    hot_path_rows,
    knee_baseline,
)
from bench.report import render

MACHINE = {"cores": 2, "cpu_model": "Intel(R) Xeon(R) Processor", "memory_gib": 23.5}
OTHER_MACHINE = {"cores": 2, "cpu_model": "AMD EPYC", "memory_gib": 23.5}
ISSUE_ROWS = [
    "gateway CPU per proxied small request / nginx's",
    "gateway throughput / direct (16 connections)",
    "gateway added latency p50 / p99, 1 connection",
    "stack CPU per 12 MP snap / one full decode of that photo",
    "gateway CPU per snap / its CPU per small proxied request",
    "portrait (EXIF orientation 6) upload CPU / the same photo landscape",
    "gateway CPU per proxied thumbnail GET / upload-svc's CPU serving it directly",
    "observability on vs off: CPU per snap, and throughput",
    "knee of the snap mix, snaps/s",
]


def ok(figures: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ok", "result": {"figures": figures, "table": []}}


def gateway_hop(**changes: Any) -> dict[str, Any]:
    figures = {
        "gateway_cpu_ms_per_request": 0.8,
        "nginx_cpu_ms_per_request": 0.2,
        "gateway_rps_vs_direct": 0.7,
        "gateway_added_p50_ms": 1.2,
        "gateway_added_p99_ms": 4.0,
        "thumbnail": {
            "gateway_cpu_vs_direct": 0.9,
            "gateway_cpu_ms_per_request": 1.8,
            "upload_svc_cpu_ms_per_request_direct": 2.0,
        },
    }
    return {**figures, **changes}


def document(**scenarios: dict[str, Any]) -> dict[str, Any]:
    """A full run whose every figure meets its goal, unless a scenario is replaced."""
    full = {
        "gateway_hop": ok(gateway_hop()),
        "soak": ok({"cpu_seconds_per_snap": {"gateway": 0.002, "upload-svc": 0.05}}),
        "knee": ok({"knee_snaps_per_second": 20.0}),
        "intake": ok(
            {
                "photo": {"width": 4000, "height": 3000},
                "upright": {"full_decode_cpu_ms_median": 60.0, "accept_cpu_ms_median": 50.0},
                "rotated_orientation_6": {"accept_cpu_ms_median": 52.0, "lossless": True},
                "portrait_over_landscape_cpu_per_upload": 1.04,
            }
        ),
        "overhead": ok({"cpu_per_snap_cost_percent": 3.0, "throughput_cost_percent": 4.0}),
    }
    return {
        "started_at": "2026-12-10T10:00:00+00:00",
        "machine": MACHINE,
        "scenarios": {**full, **scenarios},
        "knee_baseline": {
            "searched": "bench/results",
            "same_machine": {
                "json_path": "bench/results/20261203T132538Z.json",
                "knee_snaps_per_second": 10.0,
                "machine": MACHINE,
            },
            "last_recorded": None,
        },
    }


def rows_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["measure"]: row for row in hot_path_rows(doc)}


def test_the_table_has_the_issues_rows_in_its_order_and_wording() -> None:
    assert [row["measure"] for row in hot_path_rows(document())] == ISSUE_ROWS


def test_figures_that_meet_every_goal_are_met() -> None:
    assert all(row["met"] is True for row in hot_path_rows(document())), hot_path_rows(document())


@pytest.mark.parametrize(
    ("changes", "measure"),
    [
        ({"nginx_cpu_ms_per_request": 0.09}, ISSUE_ROWS[0]),  # 0.8 / 0.09 = 8.9x
        ({"gateway_rps_vs_direct": 0.28}, ISSUE_ROWS[1]),
        ({"gateway_added_p99_ms": 5.8}, ISSUE_ROWS[2]),  # p50 met, p99 not: not met
        ({"gateway_added_p50_ms": 3.5}, ISSUE_ROWS[2]),
        ({"gateway_cpu_ms_per_request": 0.5}, ISSUE_ROWS[4]),  # a snap at 4x the request
    ],
)
def test_a_gateway_figure_past_its_goal_is_not_met(changes: dict[str, Any], measure: str) -> None:
    rows = rows_of(document(gateway_hop=ok(gateway_hop(**changes))))

    assert rows[measure]["met"] is False


def test_a_proxied_thumbnail_costing_the_gateway_more_than_upload_svc_is_not_met() -> None:
    thumbnail = {
        "gateway_cpu_vs_direct": 2.278,
        "gateway_cpu_ms_per_request": 4.1,
        "upload_svc_cpu_ms_per_request_direct": 1.8,
    }
    rows = rows_of(document(gateway_hop=ok(gateway_hop(thumbnail=thumbnail))))

    row = rows[ISSUE_ROWS[6]]
    assert row["met"] is False
    assert row["scenario"] == "gateway_hop"
    assert "2.28x (4.1 / 1.8 ms)" in row["measured"]


def test_a_thumbnail_ratio_without_a_direct_cpu_figure_is_invalid() -> None:
    thumbnail = {"gateway_cpu_vs_direct": None, "gateway_cpu_ms_per_request": 4.1}
    rows = rows_of(document(gateway_hop=ok(gateway_hop(thumbnail=thumbnail))))

    assert rows[ISSUE_ROWS[6]]["met"] == INVALID


def test_a_negative_added_latency_is_invalid_not_met() -> None:
    rows = rows_of(document(gateway_hop=ok(gateway_hop(gateway_added_p99_ms=-12.4))))

    row = rows[ISSUE_ROWS[2]]
    assert row["met"] == INVALID
    assert "outside" in row["invalid_because"]


def test_a_proxy_passing_far_more_than_the_server_alone_is_invalid() -> None:
    rows = rows_of(document(gateway_hop=ok(gateway_hop(gateway_rps_vs_direct=1.7))))

    assert rows[ISSUE_ROWS[1]]["met"] == INVALID


def test_the_snap_is_judged_against_one_full_decode() -> None:
    doc = document()
    doc["scenarios"]["soak"] = ok({"cpu_seconds_per_snap": {"gateway": 0.027, "upload-svc": 0.1}})

    row = rows_of(doc)[ISSUE_ROWS[3]]

    assert row["met"] is False  # 127 ms of CPU against a 60 ms decode: 2.1x
    assert row["values"] == [round(127.0 / 60.0, 3)]
    assert row["scenario"] == "soak + intake"


def test_without_a_soak_the_snap_cpu_comes_from_the_knee_step() -> None:
    doc = document()
    del doc["scenarios"]["soak"]
    doc["scenarios"]["knee"] = ok(
        {"knee_snaps_per_second": 20.0, "knee_cpu_seconds_per_snap": {"gateway": 0.002}}
    )

    rows = rows_of(doc)

    assert rows[ISSUE_ROWS[3]]["scenario"] == "knee + intake"
    assert rows[ISSUE_ROWS[4]]["met"] is True  # 2 ms against 0.8 ms per request: 2.5x


def test_a_portrait_turn_that_is_not_lossless_misses_the_goal() -> None:
    doc = document()
    doc["scenarios"]["intake"]["result"]["figures"]["rotated_orientation_6"]["lossless"] = False

    assert rows_of(doc)[ISSUE_ROWS[5]]["met"] is False


def test_a_portrait_ratio_without_a_lossless_figure_cannot_be_met() -> None:
    doc = document()
    del doc["scenarios"]["intake"]["result"]["figures"]["rotated_orientation_6"]["lossless"]

    row = rows_of(doc)[ISSUE_ROWS[5]]

    assert row["met"] == NOT_RUN
    assert "lossless: not run" in row["measured"]


@pytest.mark.parametrize(
    ("cpu", "lost", "met"),
    [
        (3.9, 7.2, False),
        (17.0, 2.0, False),
        (4.9, 4.9, True),
        (-2.0, -1.0, True),
        (3.0, -40.0, INVALID),
    ],
)
def test_observability_costs_at_most_five_percent_cpu_and_throughput(
    cpu: float, lost: float, met: bool | str
) -> None:
    doc = document(overhead=ok({"cpu_per_snap_cost_percent": cpu, "throughput_cost_percent": lost}))

    assert rows_of(doc)[ISSUE_ROWS[7]]["met"] == met


def test_a_partial_run_says_not_run_for_what_it_did_not_measure() -> None:
    doc = document()
    doc["scenarios"] = {"gateway_hop": ok(gateway_hop())}

    rows = rows_of(doc)

    for measure in ISSUE_ROWS[3:6] + ISSUE_ROWS[7:]:
        assert rows[measure]["met"] == NOT_RUN, measure
        assert rows[measure]["measured"] == NOT_RUN, measure
    assert rows[ISSUE_ROWS[6]]["met"] is True  # the hop measured its thumbnail
    assert rows[ISSUE_ROWS[0]]["met"] is True


def test_a_failed_scenario_counts_as_not_run() -> None:
    doc = document(gateway_hop={"status": "error", "error": "RuntimeError: wrk"})

    rows = rows_of(doc)

    assert [rows[measure]["met"] for measure in ISSUE_ROWS[:3]] == [NOT_RUN] * 3
    assert rows[ISSUE_ROWS[6]]["met"] == NOT_RUN


def test_a_run_recorded_before_the_thumbnail_figure_existed_says_not_run() -> None:
    figures = gateway_hop()
    del figures["thumbnail"]

    rows = rows_of(document(gateway_hop=ok(figures)))

    assert rows[ISSUE_ROWS[6]]["met"] == NOT_RUN


def recorded(
    directory: Path, stamp: str, machine: dict[str, Any], knee: float, commit: str = "f" * 40
) -> None:
    run = {
        "started_at": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:00:00+00:00",
        "commit": {"commit": commit, "short": commit[:7], "dirty": False},
        "smoke": False,
        "machine": machine,
        "scenarios": {"knee": ok({"knee_snaps_per_second": knee})},
    }
    (directory / f"{stamp}Z.json").write_text(json.dumps(run))


def test_the_knee_is_compared_with_the_previous_run_on_the_same_machine(tmp_path: Path) -> None:
    recorded(tmp_path, "20261124T22", OTHER_MACHINE, 15.7)
    recorded(tmp_path, "20261203T13", MACHINE, 6.3)
    recorded(tmp_path, "20261205T09", OTHER_MACHINE, 14.0)
    recorded(tmp_path, "20261220T09", MACHINE, 30.0)  # later than the run: not its baseline
    doc = document(knee=ok({"knee_snaps_per_second": 12.0}))
    del doc["knee_baseline"]

    baseline = knee_baseline(doc, tmp_path)
    row = hot_path_rows(doc, baseline)[-1]

    assert baseline["same_machine"]["knee_snaps_per_second"] == 6.3
    assert baseline["last_recorded"]["knee_snaps_per_second"] == 14.0
    assert row["met"] is True  # 12.0 / 6.3 = 1.9x
    assert "20261203T13Z.json" in row["scenario"]


def test_the_issue_starting_commit_on_this_machine_is_the_baseline(tmp_path: Path) -> None:
    recorded(tmp_path, "20261203T13", MACHINE, 6.3)
    recorded(tmp_path, "20261203T15", MACHINE, 9.5, commit=ISSUE_START_COMMIT)
    recorded(tmp_path, "20261203T16", OTHER_MACHINE, 15.0, commit=ISSUE_START_COMMIT)
    recorded(tmp_path, "20261203T17", MACHINE, 11.0)  # a later run: not the bar
    doc = document(knee=ok({"knee_snaps_per_second": 12.0}))
    doc["started_at"] = "2026-12-03T18:00:00+00:00"
    del doc["knee_baseline"]

    baseline = knee_baseline(doc, tmp_path)
    row = hot_path_rows(doc, baseline)[-1]

    assert baseline["issue_start"]["knee_snaps_per_second"] == 9.5
    assert baseline["same_machine"]["knee_snaps_per_second"] == 11.0
    assert row["met"] is False  # 12.0 / 9.5 = 1.26x
    assert "20261203T15Z.json" in row["scenario"]
    assert "starting commit" in row["scenario"]


def test_a_knee_under_the_factor_is_not_met(tmp_path: Path) -> None:
    recorded(tmp_path, "20261203T13", MACHINE, 6.3)
    doc = document(knee=ok({"knee_snaps_per_second": 11.0}))
    del doc["knee_baseline"]

    assert hot_path_rows(doc, knee_baseline(doc, tmp_path))[-1]["met"] is False


def test_without_a_run_on_this_machine_the_knee_has_no_baseline(tmp_path: Path) -> None:
    recorded(tmp_path, "20261124T23", OTHER_MACHINE, 15.7)
    smoke_run = {
        "smoke": True,
        "started_at": "2026-11-26T10:00:00+00:00",
        "machine": MACHINE,
        "scenarios": {"knee": ok({"knee_snaps_per_second": 1.0})},
    }
    (tmp_path / "smoke-20261126T10Z.json").write_text(json.dumps(smoke_run))
    doc = document()
    del doc["knee_baseline"]

    row = hot_path_rows(doc, knee_baseline(doc, tmp_path))[-1]

    assert row["met"] == NO_BASELINE
    assert "20261124T23Z.json (15.7), ran on another machine (AMD EPYC)" in row["measured"]


def test_the_baseline_a_run_recorded_is_the_one_it_is_judged_against(tmp_path: Path) -> None:
    recorded(tmp_path, "20261209T09", MACHINE, 19.0)  # newer, but not what the run used
    doc = document()

    row = hot_path_rows(doc, knee_baseline(doc, tmp_path))[-1]

    assert row["met"] is True  # 20 / the recorded 10
    assert "20261203T132538Z.json" in row["scenario"]


def test_results_md_opens_with_the_hot_path_goals() -> None:
    doc = document(gateway_hop=ok(gateway_hop(gateway_added_p99_ms=-12.4)))
    doc["scenarios"] = {
        "gateway_hop": doc["scenarios"]["gateway_hop"],
        "intake": doc["scenarios"]["intake"],
        "overhead": {"status": "missing", "error": "not in this tree"},
    }
    doc.update(
        json_path="bench/results/x.json",
        started_at="2026-12-10T10:00:00+00:00",
        finished_at="2026-12-10T10:20:00+00:00",
        duration_seconds=1200.0,
        smoke=False,
        command="python -m bench.run",
        commit={"commit": "abc", "dirty": False},
        machine=MACHINE | {"os": "Debian", "kernel": "6", "python": "3.11"},
        settings={"pods": {}, "gemini_latency": 1.0},
    )

    text = render(doc)

    section = text.split("## Issue goals: hot paths", 1)[1].split("\n## ", 1)[0]
    assert text.index("## Issue goals: hot paths") < text.index("## Goals")
    assert "| measure | goal | measured | met | scenario |" in section
    for measure in ISSUE_ROWS:
        assert f"| {measure} |" in section.replace("\\|", "|"), measure
    latency = next(line for line in section.splitlines() if "added latency" in line)
    assert "impossible, not judged" in latency
    assert "**invalid**" in latency
    assert "| not run |" in section
