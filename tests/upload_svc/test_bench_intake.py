"""The intake benchmark still runs (smoke mode: small photo, few rounds, no gunicorn)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import intake


def test_intake_benchmark_smoke(tmp_path: Path) -> None:
    result = intake.run(tmp_path, smoke=True)
    json.dumps(result)
    figures = result["figures"]
    assert figures["upright"]["rounds"] == 3
    assert figures["upright"]["full_decode_ms_median"] > 0
    assert figures["rotated_orientation_6"]["accept_ms_median"] > 0
    assert figures["rotated_orientation_6"]["accept_cpu_ms_median"] > 0
    assert figures["portrait_over_landscape_cpu_per_upload"] > 0
    rows = {row["metric"]: row for row in result["table"]}
    goal = next(row for name, row in rows.items() if name.startswith("accept / full decode,"))
    assert goal["goal"] == "<= 1.0"
    assert isinstance(goal["met"], bool)
    assert "portrait / landscape, accept CPU per upload" in rows
    assert "--only intake" in result["command"]
    assert not list((tmp_path / "in-process" / "storage").rglob("original"))
