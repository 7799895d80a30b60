"""`python -m bench.run --smoke`: every scenario runs end to end, so the benchmark cannot rot.

One smoke run of the real command covers all scenarios (each a few seconds against its
own stack; the ``smoke`` fixture in conftest.py runs it once per session); the tests
then check that each produced what the results file documents. No figure is asserted:
smoke durations are far too short to mean anything.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.goals import INVALID
from bench.run import ORDER
from bench.tests.results import scenario

pytestmark = pytest.mark.integration

SERVICES = {"gateway", "upload-svc", "ai-svc"}


@pytest.mark.parametrize("name", ORDER)
def test_each_scenario_runs_and_reports_a_goal_table(smoke: dict[str, Any], name: str) -> None:
    result = scenario(smoke, name)
    assert isinstance(result["figures"], dict)
    assert result["figures"]
    assert isinstance(result["table"], list)
    assert result["table"]
    for row in result["table"]:
        assert {"metric", "value", "goal", "met"} <= set(row), row
        assert row["met"] in (True, False, None, INVALID), row
    json.dumps(result)


def test_the_knee_reports_throughput_latency_and_errors(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "knee")
    figures = result["figures"]
    for key in (
        "unloaded_snap_p99_ms",
        "knee_concurrency",
        "knee_snaps_per_second",
        "knee_snap_p50_ms",
        "knee_snap_p95_ms",
        "knee_snap_p99_ms",
        "knee_errors",
        "knee_cpu_seconds_per_snap",
        "stop_reason",
    ):
        assert key in figures, key
    assert result["steps"][0]["users"] == 1
    assert set(result["steps"][0]["services"]) == SERVICES
    assert result["inputs"]["stack"]["first_snap"]["ok"], result["inputs"]["stack"]["first_snap"]


def test_the_overhead_compares_observability_on_and_off(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "overhead")
    figures = result["figures"]
    assert {"on", "off", "throughput_cost_percent", "cpu_per_snap_cost_percent"} <= set(figures)
    for side in ("on", "off"):
        assert {"snaps_per_second", "snap_p99_ms", "errors", "cpu_seconds_per_snap"} <= set(
            figures[side]
        )
    stacks = result["inputs"]["stacks"]
    assert stacks["on"]["otlp_export"] is True
    assert stacks["off"]["observability_env"]["OTEL_SDK_DISABLED"] == "true"
    assert len(result["rounds"]["on"]) == len(result["rounds"]["off"]) >= 1


def test_streaming_reports_first_idea_against_the_whole_answer(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "streaming")
    figures = result["figures"]
    assert figures["users"] == scenario(smoke, "knee")["figures"]["knee_concurrency"]
    assert figures["users_from_knee"] is True
    assert figures["streams"] > 0
    assert figures["errors"] == 0
    for name in ("first_idea", "whole_answer"):
        assert 0 < figures[f"{name}_p50_ms"] <= figures[f"{name}_p99_ms"]
    assert figures["first_idea_p50_ms"] < figures["whole_answer_p50_ms"]


def test_the_soak_reports_errors_and_every_services_memory(smoke: dict[str, Any]) -> None:
    figures = scenario(smoke, "soak")["figures"]
    assert "errors" in figures
    assert set(figures["memory"]) == SERVICES
    for memory in figures["memory"].values():
        assert {"start_mib", "end_mib", "growth_percent"} <= set(memory)
        assert memory["start_mib"] > 0
    assert len(figures["memory_samples_mib"]) >= 2
    assert set(figures["in_flight_mean"]) == SERVICES


def test_the_library_scenario_measures_both_operations_at_each_concurrency(
    smoke: dict[str, Any],
) -> None:
    result = scenario(smoke, "library")
    for operation in ("history", "draft_patch"):
        steps = result["figures"][operation]
        assert set(steps) == {"1", "8", "32"}
        for clients, step in steps.items():
            assert step["clients"] == int(clients)
            assert step["requests_ok"] > 0, (operation, step)
            assert step["errors"] == 0, (operation, step)
            assert step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"]
    assert "PostgreSQL" in result["inputs"]["database"]


def test_the_result_file_records_machine_commit_and_command(smoke: dict[str, Any]) -> None:
    document = smoke["document"]
    machine = document["machine"]
    assert machine["cores"] >= 1
    assert machine["memory_bytes"] > 0
    assert machine["cpu_model"]
    assert machine["python"].startswith("3.")
    assert machine["os"]
    assert len(document["commit"]["commit"]) == 40
    assert document["commit"]["dirty"] in (True, False)
    assert "--smoke" in document["command"]
    assert document["smoke"] is True
    assert document["settings"]["gemini_latency"] > 0
    assert document["scenarios_selected"] == list(ORDER)


def test_the_markdown_has_a_table_per_scenario_and_the_sizing(smoke: dict[str, Any]) -> None:
    markdown = smoke["markdown"]
    assert markdown.startswith("# Benchmark results")
    for heading in (
        "## 1. Snap mix: the knee",
        "## 2. Observability overhead",
        "## 3. Soak at half the knee",
        "## 4. Service comparisons",
        "## Sizing",
    ):
        assert heading in markdown, heading
    assert markdown.index("## Issue goals: hot paths") < markdown.index("## Goals")
    assert "same_machine" in smoke["document"]["knee_baseline"]
    assert "| metric | goal | measured | met |" in markdown
    assert smoke["document"]["commit"]["commit"] in markdown
    sizing = smoke["document"]["sizing"]
    assert set(sizing["services"]) == SERVICES
    assert set(sizing["chart_values"]) == {"gateway", "uploadSvc", "aiSvc"}
    for values in sizing["chart_values"].values():
        assert {"requests", "limits"} <= set(values["resources"])
        assert values["autoscaling"]["targetCPUUtilizationPercentage"]
    assert "```yaml" in markdown


def test_a_smoke_run_leaves_the_recorded_results_alone(smoke: dict[str, Any]) -> None:
    document = smoke["document"]
    assert not document["markdown_path"].endswith("bench/RESULTS.md")
    assert smoke["out"].name in document["json_path"]
