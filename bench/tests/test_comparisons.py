"""The service comparisons of the shared smoke run: each measured what it reports.

These read the session's one `python -m bench.run --smoke` (conftest.py) instead of
starting each comparison's stack a second time. Figures are checked for being
measured (present, positive, consistent with each other), never against a goal.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.gateway_hop import TARGETS
from bench.goals import INVALID
from bench.hot_path_goals import hot_path_rows
from bench.tests.results import scenario

pytestmark = pytest.mark.integration


def judged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if not str(row["goal"]).startswith(("reference", "reported"))]


def test_the_gateway_hop_measures_every_target_without_errors(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "gateway_hop")
    figures = result["figures"]
    for target in TARGETS:
        assert figures[target]["errors"] == 0, target
        assert figures[target]["rps"] > 0
        assert figures[target]["p99_ms"] >= figures[target]["p50_ms"] > 0
    assert figures["upload_memory"]["rounds"]
    assert result["inputs"]["request"].startswith("GET /v1/presets")
    assert result["inputs"]["load_tool"].startswith("wrk")
    for row in judged(result["table"]):
        assert row["met"] in (True, False, INVALID), row


def test_the_gateway_hops_added_latency_comes_from_paired_rounds(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "gateway_hop")
    figures, rounds = result["figures"], result["inputs"]["rounds"]
    for proxy in ("gateway", "nginx"):
        for percentile in ("p50", "p99"):
            spread = figures[f"{proxy}_added_{percentile}_spread_ms"]
            assert len(spread["rounds"]) == rounds
            assert spread["lowest_ms"] <= spread["median_ms"] <= spread["highest_ms"]
            assert figures[f"{proxy}_added_{percentile}_ms"] == spread["median_ms"]


def test_the_gateway_hop_measures_a_proxied_thumbnail_against_upload_svc(
    smoke: dict[str, Any],
) -> None:
    result = scenario(smoke, "gateway_hop")
    thumbnail = result["figures"]["thumbnail"]
    assert thumbnail["errors"] == 0
    assert thumbnail["thumbnail_bytes"] > 0
    assert thumbnail["rps"]["gateway"] > 0
    assert thumbnail["rps"]["direct"] > 0
    assert thumbnail["gateway_cpu_ms_per_request"] > 0
    assert thumbnail["upload_svc_cpu_ms_per_request_direct"] > 0
    # Proxied, upload-svc still serves the image: its CPU shows up behind the gateway too.
    assert thumbnail["upload_svc_cpu_ms_per_request_proxied"] > 0
    assert len(thumbnail["round_ratios"]) == result["inputs"]["rounds"]
    assert thumbnail["gateway_cpu_vs_direct"] == round(
        thumbnail["gateway_cpu_ms_per_request"] / thumbnail["upload_svc_cpu_ms_per_request_direct"],
        3,
    )
    row = next(row for row in result["table"] if "thumbnail GET" in row["metric"])
    assert row["value"] == thumbnail["gateway_cpu_vs_direct"]
    assert row["goal"] == "<= 1"
    assert row["met"] in (True, False, INVALID)
    issue_row = next(
        row for row in hot_path_rows(smoke["document"]) if "thumbnail" in row["measure"]
    )
    assert issue_row["met"] in (True, False, INVALID)
    assert issue_row["values"] == [thumbnail["gateway_cpu_vs_direct"]]


def test_the_sign_in_benchmark_measures_verify_and_cpu(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "tokens")
    figures = result["figures"]
    assert figures["verify_ms"] > 0
    assert figures["cpu_ms_per_request"]["anonymous"] > 0
    assert figures["cpu_ms_per_request"]["signed_in"] > 0
    assert all(count > 0 for count in result["inputs"]["requests_per_round"])
    assert result["inputs"]["load_tool"].startswith("wrk")


def test_the_intake_benchmark_compares_with_a_full_decode(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "intake")
    figures = result["figures"]
    assert figures["upright"]["rounds"] == 3
    assert figures["upright"]["full_decode_ms_median"] > 0
    assert figures["rotated_orientation_6"]["accept_ms_median"] > 0
    assert figures["rotated_orientation_6"]["accept_cpu_ms_median"] > 0
    assert figures["portrait_over_landscape_cpu_per_upload"] > 0
    assert figures["upright"]["full_decode_cpu_ms_median"] > 0
    portrait = figures["rotated_orientation_6"]
    assert isinstance(portrait["lossless"], bool)
    assert isinstance(portrait["tables_kept"], bool)
    assert portrait["mean_abs_difference"] >= 0
    rows = {row["metric"]: row for row in result["table"]}
    goal = next(row for name, row in rows.items() if name.startswith("accept / full decode,"))
    assert goal["goal"] == "<= 1.0"
    assert goal["met"] in (True, False, INVALID)
    assert "portrait / landscape, accept CPU per upload" in rows
    assert "--only intake" in result["command"]
    assert not list((smoke["work"] / "intake" / "upload-svc" / "storage").rglob("original"))


def test_ai_capacity_measures_in_flight_calls_and_cpu_per_call(smoke: dict[str, Any]) -> None:
    result = scenario(smoke, "ai_capacity")
    figures, steps = result["figures"], result["steps"]
    assert steps
    assert steps[0]["in_flight"] == result["inputs"]["in_flight"][0]
    for step in steps:
        assert step["errors"] == 0, step
        assert step["requests"] > 0
        assert step["gemini_calls"] >= step["requests"]  # one upstream call per snap
        assert step["p99_ms"] >= step["p50_ms"] >= 1000 * figures["gemini_latency_s"]
    assert figures["cpu_ms_per_model_call"] > 0
    assert figures["in_flight_per_pod"] in (0, *result["inputs"]["in_flight"])


def test_ai_svc_sends_the_preview_not_the_photo_upstream(smoke: dict[str, Any]) -> None:
    figures = scenario(smoke, "ai_capacity")["figures"]
    preview, full_size = figures["preview"], figures["full_size"]
    width, height = figures["photo_dimensions"]
    # What reached the Gemini API: the 768 px preview, same shape, far fewer bytes.
    assert max(preview["dimensions"]) == 768
    assert preview["dimensions"][0] * height == preview["dimensions"][1] * width
    assert full_size["dimensions"] == [width, height]
    assert preview["body_bytes"] < full_size["body_bytes"]
    assert preview["image_bytes"] < full_size["image_bytes"]
    assert figures["bytes_ratio"] == round(preview["body_bytes"] / full_size["body_bytes"], 4)
    assert preview["documented_image_tokens"] < full_size["documented_image_tokens"]
