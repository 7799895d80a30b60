"""The capacity benchmark still runs end to end (its figures come from `make bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ai_capacity


@pytest.mark.integration
def test_the_capacity_benchmark_runs_and_reports(tmp_path: Path) -> None:
    result = ai_capacity.run(tmp_path, smoke=True)

    json.dumps(result)  # the runner stores it as is
    assert {"figures", "table"} <= set(result)
    figures = result["figures"]
    assert figures["baseline_snaps_per_s"] > 0
    assert figures["ours_snaps_per_s"] > 0
    # The preview is what reaches Gemini: fewer bytes and tokens than the original.
    assert figures["preview_upstream_bytes"] < figures["original_upstream_bytes"]
    assert figures["preview_image_tokens"] == 258
    assert figures["original_image_tokens"] > figures["preview_image_tokens"]
    assert figures["preview_dimensions"] == [768, 576]
    for row in result["table"]:
        assert {"metric", "value", "goal", "met"} <= set(row)
        assert row["met"] in (True, False, None)
