"""The goal check: an impossible figure is reported invalid, never met."""

from __future__ import annotations

import math

import pytest

from bench.gateway_hop import paired_added
from bench.goals import INVALID, SHARE, audit, goal_row, judge
from bench.report import goals_summary


@pytest.mark.parametrize("value", [-12.4, -0.001, math.nan, math.inf, -math.inf])
def test_an_impossible_latency_is_invalid_not_met(value: float) -> None:
    assert judge(value, "<", 25.0) == INVALID


@pytest.mark.parametrize(("value", "met"), [(0.0, True), (4.9, True), (25.0, False), (30, False)])
def test_a_possible_figure_is_judged_against_the_goal(value: float, met: bool) -> None:
    assert judge(value, "<", 25.0) is met


@pytest.mark.parametrize("value", [-0.1, 1.01, math.nan])
def test_a_share_outside_zero_to_one_is_invalid(value: float) -> None:
    assert judge(value, ">=", 0.6, SHARE) == INVALID


def test_a_throughput_that_is_not_a_number_is_invalid() -> None:
    assert judge(None, ">=", 0.6) == INVALID
    assert judge(True, ">=", 0.6) == INVALID


def test_the_row_says_why_its_figure_was_not_judged() -> None:
    row = goal_row("gateway added latency p99 (ms)", -12.4, "<", 25.0)

    assert row["met"] == INVALID
    assert row["goal"] == "< 25"
    assert "outside" in row["invalid_because"]
    assert "invalid_because" not in goal_row("p99", 3.0, "<", 25.0)


def test_the_audit_catches_rows_built_by_hand() -> None:
    rows = [
        {"metric": "added p99", "value": -12.4, "goal": "< 25", "met": True, "valid": [0, None]},
        {"metric": "cpu", "value": math.nan, "goal": "< 1", "met": True},
        {"metric": "ratio", "value": 1.7, "goal": ">= 0.6", "met": True, "valid": [0, 1]},
        {"metric": "fine", "value": 3.0, "goal": "< 25", "met": True, "valid": [0, math.inf]},
        {"metric": "reference", "value": -1.0, "goal": "reference", "met": None},
    ]
    rows[0]["valid"] = [0, math.inf]

    audit(rows)

    assert [row["met"] for row in rows] == [INVALID, INVALID, INVALID, True, None]


def test_the_results_goal_summary_shows_an_invalid_figure_as_invalid() -> None:
    document = {
        "scenarios": {
            "gateway_hop": {
                "status": "ok",
                "result": {"table": [goal_row("gateway added latency p99 (ms)", -12.4, "<", 25)]},
            }
        }
    }

    text = "\n".join(goals_summary(document))

    assert "**invalid**" in text
    assert "| yes |" not in text


def test_added_latency_pairs_each_proxied_round_with_its_own_direct_round() -> None:
    # Direct had a slow spell over rounds 2 and 3, the gateway only over round 3: the
    # difference of the two medians is -32 ms; the rounds themselves say +3 ms.
    direct, proxied = [2.0, 40.0, 41.0], [5.0, 8.0, 44.0]

    added = paired_added(proxied, direct)

    assert added["median_ms"] == 3.0
    assert (added["lowest_ms"], added["highest_ms"]) == (-32.0, 3.0)
    assert added["rounds"] == [3.0, -32.0, 3.0]


def test_added_latency_needs_the_same_rounds_on_both_sides() -> None:
    with pytest.raises(ValueError, match="per round"):
        paired_added([1.0, 2.0], [1.0])
