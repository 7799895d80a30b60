"""Goal checks that refuse impossible figures instead of calling them met.

A latency, a CPU time, a throughput or a count is never negative, and a share lies
between 0 and 1: a figure outside the range its quantity can take says the measurement
went wrong (drift between two medians, a counter read from the wrong process, a division
by an empty window), and a goal check that compared it with the goal anyway would report
it as met. Every goal row therefore carries the range its figure can take, and the
runner re-checks every scenario's table with :func:`audit`, so a row built by hand is
caught as well.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

INVALID = "invalid"
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
NON_NEGATIVE = (0.0, math.inf)
SHARE = (0.0, 1.0)


def impossible(value: Any, valid: tuple[float, float] = NON_NEGATIVE) -> str | None:
    """Why ``value`` cannot be a measured figure of a quantity in ``valid``, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "not a number"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite"
    low, high = valid
    if not low <= value <= high:
        return f"outside [{low:g}, {high:g}]"
    return None


def judge(
    value: Any, comparison: str, limit: float, valid: tuple[float, float] = NON_NEGATIVE
) -> bool | str:
    """True or False against the goal, or :data:`INVALID` for a figure that cannot be."""
    if impossible(value, valid) is not None:
        return INVALID
    return COMPARISONS[comparison](value, limit)


def goal_row(
    metric: str,
    value: Any,
    comparison: str,
    limit: float,
    valid: tuple[float, float] = NON_NEGATIVE,
) -> dict[str, Any]:
    """One row of a scenario's goal table, its range recorded for :func:`audit`."""
    row: dict[str, Any] = {
        "metric": metric,
        "value": value,
        "goal": f"{comparison} {limit:g}",
        "met": judge(value, comparison, limit, valid),
        "valid": list(valid),
    }
    reason = impossible(value, valid)
    if reason is not None:
        row["invalid_because"] = reason
    return row


def audit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark as invalid every judged row whose figure is impossible; returns ``rows``.

    A row that records its range (``valid``) is checked against it; any other judged row
    with a numeric figure is checked for NaN and infinity only, since its range is not
    known here. Rows without a verdict (``met`` None: reference figures) are left alone.
    """
    for row in rows:
        if row.get("met") is None:
            continue
        value = row.get("value")
        if "valid" in row:
            low, high = row["valid"]
            reason = impossible(value, (float(low), float(high)))
        elif isinstance(value, float) and not math.isfinite(value):
            reason = impossible(value)
        else:
            reason = None
        if reason is not None:
            row["met"] = INVALID
            row["invalid_because"] = reason
    return rows
